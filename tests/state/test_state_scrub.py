"""The secret scrubber on its own: what it removes and what it keeps."""

from __future__ import annotations

import pytest

from comfyfleet.state.scrub import REDACTED, is_secret_name, scrub, scrub_text


@pytest.mark.parametrize(
    "name",
    [
        "WEB_PASSWORD",
        "OPEN_BUTTON_TOKEN",
        "HF_TOKEN",
        "VAST_API_KEY",
        "apiKey",
        "image_login",
        "Authorization",
        "CIVITAI_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "jupyter_token",
        "sig",
        "x-auth",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["label", "image", "design", "author", "signal", "disk", "passage", "PORTAL_CONFIG"]
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("Authorization: Bearer abcDEF123456", "abcDEF123456", "Authorization"),
        ("https://user:hunter2@example.test/x", "hunter2", "https://user:"),
        ("http://h:8188/view?filename=a.png&token=t0ps3cret", "t0ps3cret", "filename=a.png"),
        ("https://api.test/x?key=k3yk3y&page=2", "k3yk3y", "page=2"),
        ('export HF_TOKEN="hf_abcdef"; python main.py', "hf_abcdef", "python main.py"),
        ("docker run -e WEB_PASSWORD=pw123 -e MODE=fast img", "pw123", "img"),
        ("docker run -e ANYTHING=opaque1 img", "opaque1", "-e ANYTHING="),
        ('{"api_key": "k-999"}', "k-999", "api_key"),
        ("postgresql://fleet:pgpass@db:5432/fleet", "pgpass", "@db:5432/fleet"),
    ],
)
def test_scrub_text_removes_the_value_and_keeps_the_rest(text: str, secret: str, kept: str) -> None:
    cleaned = scrub_text(text)
    assert secret not in cleaned
    assert kept in cleaned
    assert REDACTED in cleaned


def test_plain_text_is_untouched() -> None:
    text = "Error: connection refused while pulling vastai/comfy:v0.3.64 (design: ok)"
    assert scrub_text(text) == text


def test_scrub_mappings_keeps_names_and_shape() -> None:
    value = {
        "image": "vastai/comfy",
        "disk": 40,
        "use_ssh": True,
        "env": {"-p 8188:8188": "1", "-h": "x", "FOO": "bar"},
        "extra_env": ["A=1", "B=2"],
        "nested": [{"password": "p"}, {"token": None}],
        "onstart": "TOKEN=abc123 ./run.sh",
    }
    assert scrub(value) == {
        "image": "vastai/comfy",
        "disk": 40,
        "use_ssh": True,
        "env": {"-p 8188:8188": "1", "-h": REDACTED, "FOO": REDACTED},
        "extra_env": [f"A={REDACTED}", f"B={REDACTED}"],
        "nested": [{"password": REDACTED}, {"token": None}],
        "onstart": f"TOKEN={REDACTED} ./run.sh",
    }
