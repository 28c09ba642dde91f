"""Secret scrubbing of workflow files, with real-looking secrets (made at run time, so this
file itself holds none)."""

from __future__ import annotations

import base64
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.services.backup_pull import _names_from
from comfyfleet.services.scrub import PLACEHOLDER, Scrubber, name_kind, placeholders_in

_RNG = random.Random(20240611)
ALNUM = string.ascii_letters + string.digits
KEY = b"k" * 32


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


SECRETS = {
    "hf_token": "hf_" + rnd(34),
    "sk_key": "sk-proj-" + rnd(48, ALNUM + "-_"),
    "github_token": "ghp_" + rnd(36),
    "aws_access_key": "AKIA" + rnd(16, string.ascii_uppercase + string.digits),
    "google_key": "AIza" + rnd(35, ALNUM + "-_"),
    "replicate_token": "r8_" + rnd(37),
    "civitai_key": rnd(32, "0123456789abcdef"),
    "jwt": f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': rnd(12)})}.{rnd(43, ALNUM)}",
}


def ui_workflow(*widget_values: Any, node_type: str = "Note") -> dict[str, Any]:
    return {
        "id": "6f1e1b8e-3f0e-4b8a-9d7e-1c2b3a4d5e6f",
        "revision": 0,
        "last_node_id": 2,
        "last_link_id": 0,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "widgets_values": [512, 512, 1, 0]},
            {"id": 2, "type": node_type, "widgets_values": list(widget_values)},
        ],
        "links": [],
        "version": 0.4,
    }


def scrub_one(data: bytes, scrubber: Scrubber | None = None, name: str = "wf.json") -> Any:
    return (scrubber or Scrubber(KEY)).scrub_files({name: data})[name]


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_every_known_shape_is_scrubbed_to_a_stable_placeholder(kind: str) -> None:
    secret = SECRETS[kind]
    doc = ui_workflow(secret if kind == "civitai_key" else f"my key: {secret} (do not share)")
    raw = json.dumps(doc, indent=2).encode()
    scrubber = Scrubber(KEY)
    out = scrub_one(raw, scrubber)
    assert secret.encode() not in out.data
    placeholder = scrubber.placeholder(secret, kind)
    assert PLACEHOLDER.fullmatch(placeholder)
    assert placeholder.encode() in out.data
    (finding,) = out.findings
    assert (finding.path, finding.kind, finding.node) == (
        "$.nodes[1].widgets_values[0]",
        kind,
        "node 2 (Note)",
    )
    assert secret not in json.dumps(finding.to_json()) and secret not in finding.describe()
    again = scrub_one(raw, Scrubber(KEY))
    assert again.data == out.data, "the same secret must give the same placeholder every time"
    assert scrub_one(raw, Scrubber(b"another key")).data != out.data


def test_credentials_in_urls_and_headers() -> None:
    token, password, sig = rnd(40), rnd(14), rnd(64, "0123456789abcdef")
    values = [
        f"https://civitai.com/api/download/models/128713?type=Model&token={token}",
        f"https://artist:{password}@models.example.com/lora.safetensors",
        f"https://bucket.s3.amazonaws.com/x.bin?X-Amz-Signature={sig}&X-Amz-Expires=600",
        f"Authorization: Bearer {token}",
        "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors?download=1",
    ]
    out = scrub_one(json.dumps(ui_workflow(*values)).encode())
    text = out.data.decode()
    for secret in (token, password, sig):
        assert secret not in text
    assert "type=Model&token=<scrubbed:url_token:" in text
    assert "https://artist:<scrubbed:url_password:" in text and "@models.example.com" in text
    assert "X-Amz-Expires=600" in text and "Bearer <scrubbed:" in text
    assert values[4] in text, "a URL without credentials stays as it is"
    kinds = {(f.path, f.kind) for f in out.findings}
    assert ("$.nodes[1].widgets_values[1]", "url_password") in kinds
    assert ("$.nodes[1].widgets_values[0]", "url_token") in kinds


def test_named_values_need_no_shape_and_leave_every_file(tmp_path: Path) -> None:
    password = "Tr0ub4dor&3" + rnd(6)  # no recognisable shape: found by its name only
    api = {"3": {"class_type": "FalNode", "inputs": {"prompt": "a cat", "fal_key": password}}}
    ui = ui_workflow("a cat", password, 7, node_type="FalNode")
    note = ui_workflow(f"remember: the studio key is {password}")
    scrubber = Scrubber(KEY, widget_names=lambda t: ["prompt", "api_key", "seed"])
    out = scrubber.scrub_files(
        {
            "api.json": json.dumps(api).encode(),
            "ui.json": json.dumps(ui).encode(),
            "note.json": json.dumps(note).encode(),
        }
    )
    placeholder = scrubber.placeholder(password, "api_key")
    for name, result in out.items():
        assert password.encode() not in result.data, name
        assert placeholder.encode() in result.data, name
    (api_finding,) = out["api.json"].findings
    assert api_finding.path == '$["3"].inputs.fal_key' and api_finding.node == "node 3 (FalNode)"
    assert api_finding.name == "fal_key"
    (ui_finding,) = out["ui.json"].findings
    assert (ui_finding.path, ui_finding.name) == ("$.nodes[1].widgets_values[1]", "api_key")
    # the positional value stays unnamed without the node's definition (shape rules only)
    unnamed = Scrubber(KEY).scrub_files({"ui.json": json.dumps(ui).encode()})["ui.json"]
    assert unnamed.findings == ()


def test_widget_names_come_from_real_node_definitions(object_info_full: dict[str, Any]) -> None:
    names = _names_from(NodeCatalog(object_info_full))
    assert names("KSampler") == [
        "seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
    ]
    assert names("NoSuchNode") is None


def test_files_without_secrets_keep_every_byte(shared_dir: Path) -> None:
    """Real workflows (saved by ComfyUI's frontend) scrub to themselves: no false positives."""
    files = {p.name: p.read_bytes() for p in sorted(shared_dir.glob("fixtures/workflows-*/*.json"))}
    assert len(files) > 5
    odd = b'{\n\t"a" : "caf\\u00e9 \\/ x",\n\t"nodes":[ ],  "seed": 123456789012 }\r\n'
    files["odd.json"] = odd
    for name, result in Scrubber(KEY).scrub_files(files).items():
        assert result.findings == () and result.data == files[name], name


def test_only_the_tokens_holding_a_secret_change() -> None:
    secret = SECRETS["hf_token"]
    raw = ('{\n    "a" :  "caf\\u00e9",\n\t"b": "' + secret + '", "c": [1,2]\n}').encode()
    scrubber = Scrubber(KEY)
    out = scrub_one(raw, scrubber)
    expected = raw.replace(secret.encode(), scrubber.placeholder(secret, "hf_token").encode())
    assert out.data == expected
    assert scrub_one(out.data, scrubber).findings == (), "scrubbing twice changes nothing"


@pytest.mark.parametrize(
    "value",
    [
        "a knight holding a token: golden coin",
        "</s>",
        "mean",
        "none",
        "${OPENAI_API_KEY}",
        "a3f5e8c1d2b4a6978812345678901234567890abcdef1234567890abcdef1234",  # sha256 of a model
        "6f1e1b8e-3f0e-4b8a-9d7e-1c2b3a4d5e6f",
        "Bearer",
        "basic composition, sk-etch style",
    ],
)
def test_ordinary_values_are_left_alone(value: str) -> None:
    doc = {
        "1": {
            "class_type": "Tokenizer",
            "inputs": {"eos_token": value, "token_normalization": value, "api_key": "none"},
        },
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": value}},
    }
    raw = json.dumps(doc).encode()
    out = scrub_one(raw)
    assert out.findings == () and out.data == raw


def test_env_references_under_secret_names_are_kept() -> None:
    raw = json.dumps({"1": {"class_type": "X", "inputs": {"api_key": "${KEY}"}}}).encode()
    assert scrub_one(raw).data == raw


def test_text_and_binary_files() -> None:
    secret = SECRETS["github_token"]
    text = f"notes\nGITHUB_TOKEN={secret}\npassword = hunter2hunter2\nplain line\n".encode()
    binary = b"\x89PNG\r\n\x1a\n\x00\xff" + secret.encode()
    out = Scrubber(KEY).scrub_files({"notes.txt": text, "x.png": binary})
    assert secret.encode() not in out["notes.txt"].data
    assert b"hunter2hunter2" not in out["notes.txt"].data
    assert [(f.path, f.kind) for f in out["notes.txt"].findings] == [
        ("line 2", "github_token"),
        ("line 3", "password"),
    ]
    assert out["notes.txt"].data.endswith(b"plain line\n")
    assert out["x.png"].data == binary, "binary files are kept as they are"


def test_configured_names_and_patterns() -> None:
    pin, badge = rnd(6, string.digits), "ACME-" + rnd(10, string.digits)
    doc = {"1": {"class_type": "X", "inputs": {"studio_pin": pin, "note": f"badge {badge}"}}}
    scrubber = Scrubber(KEY, names=["Studio_PIN"], patterns=[r"ACME-(?P<secret>[0-9]{10})"])
    out = scrub_one(json.dumps(doc).encode(), scrubber)
    text = out.data.decode()
    assert pin not in text and badge[5:] not in text and "badge ACME-<scrubbed:custom:" in text
    assert sorted(f.kind for f in out.findings) == ["custom", "secret"]


def test_placeholders_are_found_for_restore() -> None:
    scrubber = Scrubber(KEY)
    out = scrub_one(json.dumps(ui_workflow(SECRETS["sk_key"], SECRETS["jwt"])).encode(), scrubber)
    assert placeholders_in(out.data) == ["sk_key", "jwt"]
    assert placeholders_in(b'{"nodes": []}') == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("api_key", "api_key"),
        ("APIKey", "api_key"),
        ("Comfy.Server.APIKey", "api_key"),
        ("openai_key", "api_key"),
        ("hf_token", "token"),
        ("HF_TOKEN", "token"),
        ("password", "password"),
        ("client_secret", "secret"),
        ("basic_auth", "auth"),
        ("token_normalization", None),
        ("max_tokens", None),
        ("eos_token", None),
        ("sort_key", None),
        ("author", None),
        ("seed", None),
    ],
)
def test_secret_names(name: str, kind: str | None) -> None:
    assert name_kind(name) == kind
