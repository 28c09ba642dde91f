"""The pure parts of model pulls: curl's config and output, folders, sources, tokens."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from comfyfleet.config import Settings, load_settings
from comfyfleet.errors import UnsafeSource, UsageError
from comfyfleet.remote.download import (
    DownloadRequest,
    curl_config,
    parse_head,
    parse_meter,
    parse_size,
)
from comfyfleet.services.models import removal_candidates
from comfyfleet.services.models_source import (
    auth_headers,
    check_folder,
    download_tokens,
    folder_dir,
    plan_pull,
)
from comfyfleet.util.redact import redact

SHA = "ab" * 32


def offline(tmp_path: Path, **env: str) -> Settings:
    base = {
        "COMFYFLEET_PATHS__CONFIG_DIR": str(tmp_path / "config"),
        "COMFYFLEET_PATHS__CACHE_DIR": str(tmp_path / "cache"),
        "COMFYFLEET_CATALOG__OFFLINE": "1",
    }
    return load_settings(env={**base, **env}, config_file=tmp_path / "none.toml")


def test_curl_config_quotes_values_and_refuses_line_breaks() -> None:
    token = 'tok"en\\with-quotes-0123456789'
    request = DownloadRequest(
        "https://example.com/a%20b/x.safetensors?type=Model",
        (("Authorization", f"Bearer {token}"),),
    )
    text = curl_config(request, output=PurePosixPath("/w/models/loras/x.safetensors.part"))
    lines = text.decode().splitlines()
    assert 'url = "https://example.com/a%20b/x.safetensors?type=Model"' in lines
    assert 'header = "Authorization: Bearer tok\\"en\\\\with-quotes-0123456789"' in lines
    assert 'output = "/w/models/loras/x.safetensors.part"' in lines
    assert {"fail", "location", "continue-at = -", "globoff"} <= set(lines)
    assert 'proto-redir = "=http,https"' in lines
    assert token not in repr(request), "headers never show in a repr"
    head = curl_config(request, head=True).decode().splitlines()
    assert "head" in head and "fail" not in head and not any(x.startswith("output") for x in head)
    injected = DownloadRequest("https://e.com/x", (("Authorization", "Bearer a\nurl = evil"),))
    with pytest.raises(UnsafeSource, match="control characters"):
        curl_config(injected, head=True)


def test_head_blocks_give_size_hash_and_the_first_status() -> None:
    out = (
        "HTTP/1.1 302 Found\r\nLocation: /cdn/x\r\n"
        f'X-Linked-Etag: "{SHA}"\r\nX-Linked-Size: 1234\r\n\r\n'
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nAccept-Ranges: bytes\r\n\r\n"
    )
    answer = parse_head(out)
    assert answer.ok and answer.first_status == 302 and answer.status == 200
    assert answer.size == 1234 and answer.sha256 == SHA and answer.redirected
    # A signed CDN URL refusing HEAD: Hugging Face's own headers still give the size.
    cdn = out.replace("HTTP/1.1 200 OK\r\nContent-Length: 1234", "HTTP/1.1 403 Forbidden")
    refused = parse_head(cdn)
    assert not refused.ok and refused.first_status == 302 and refused.size == 1234
    plain = parse_head('HTTP/2 200\r\ncontent-length: 9\r\netag: "abc"\r\n\r\n')
    assert plain.size == 9 and plain.sha256 is None and not plain.redirected
    early = parse_head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\n\r\n")
    assert early.first_status == 401
    ranged = parse_head("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/5000\r\n\r\n")
    assert ranged.ok and ranged.size == 5000  # the probe's answer: the total, not one byte
    failed = parse_head("", 6, "curl: (6) Could not resolve host: nowhere.invalid\n")
    assert failed.first_status is None and "Could not resolve" in failed.error


def test_meter_lines_are_parsed_others_ignored() -> None:
    assert parse_size("2929k") == 2929 * 1024 and parse_size("1.5G") == 3 * 1024**3 // 2
    assert parse_size("--:--:--") is None
    line = " 42  100M   42 42.0M    0     0  10.1M      0  0:00:09  0:00:04  0:00:05 10.2M"
    p = parse_meter(line)
    assert p is not None and p.received == 42 * 1024**2 and p.total == 100 * 1024**2
    assert p.speed == int(10.2 * 1024**2)
    done = parse_meter(
        "100  195k  100  195k    0     0   190M      0 --:--:-- --:--:-- --:--:--  190M"
    )
    assert done is not None and done.received == done.total == 195 * 1024
    assert parse_meter("  % Total    % Received % Xferd  Average Speed   Time    Time") is None
    assert parse_meter("curl: (18) transfer closed with 100 bytes remaining to read") is None


def test_folders_accept_keys_and_legacy_names() -> None:
    assert check_folder("loras") == "loras"
    assert check_folder("clip") == "text_encoders" and check_folder("unet") == "diffusion_models"
    assert check_folder("t2i_adapter") == "controlnet"
    with pytest.raises(UsageError) as bad:
        check_folder("custom_nodes")
    assert "loras" in (bad.value.hint or "") and "clip (text_encoders)" in (bad.value.hint or "")
    assert folder_dir("text_encoders", "clip") == "clip"
    assert folder_dir("diffusion_models") == "diffusion_models"
    assert folder_dir("diffusion_models", "unet") == "unet"
    assert folder_dir("controlnet") == "controlnet"


def test_removal_paths_stay_in_the_model_folders() -> None:
    assert removal_candidates("loras/a/x.safetensors") == ["loras/a/x.safetensors"]
    assert removal_candidates("clip/t5.safetensors") == [
        "clip/t5.safetensors",
        "text_encoders/t5.safetensors",
    ]
    assert removal_candidates("text_encoders/t5.safetensors")[0] == "text_encoders/t5.safetensors"
    for bad in ("x.safetensors", "../x", "loras/../../x", "/abs/x", "etc/passwd", "loras/a b"):
        with pytest.raises(UsageError):
            removal_candidates(bad)


async def test_plan_uses_the_model_list_and_the_manifest(tmp_path: Path) -> None:
    settings = offline(tmp_path)
    url = "https://github.com/madebyollin/taesd/raw/main/taef1_decoder.pth"
    planned = await plan_pull(settings, url)
    assert planned.source.folder == "vae_approx" and planned.path == "vae_approx/taef1_decoder.pth"
    assert any("model list" in n for n in planned.notes)

    manifest = tmp_path / "config" / "models.toml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        '[models]\n"style.safetensors" = '
        f'{{ source = "https://e.com/style.safetensors", sha256 = "{SHA}", folder = "loras" }}\n'
    )
    mine = await plan_pull(settings, "https://mirror.example/files/style.safetensors")
    assert mine.source.folder == "loras" and mine.source.sha256 == SHA
    with pytest.raises(UsageError, match="which model folder") as unknown:
        await plan_pull(settings, "https://e.com/nobody-knows.safetensors")
    assert "--folder" in (unknown.value.hint or "")
    with pytest.raises(UsageError, match="--name"):
        await plan_pull(settings, "https://e.com/download?id=3", folder="loras")


async def test_plan_rebuilds_hub_urls_and_needs_civitai_versions_offline(tmp_path: Path) -> None:
    settings = offline(tmp_path, COMFYFLEET_CATALOG__HUGGINGFACE_URL="http://hf.mirror:9")
    planned = await plan_pull(
        settings,
        "https://huggingface.co/acme/sd/resolve/v2/unet/model.safetensors",
        folder="checkpoints",
    )
    assert planned.source.url == "http://hf.mirror:9/acme/sd/resolve/v2/unet/model.safetensors"
    assert planned.source.spec == "hf://acme/sd@v2/unet/model.safetensors"
    assert planned.source.filename == "model.safetensors" and planned.source.kind == "huggingface"
    with pytest.raises(UsageError, match="names no version"):
        await plan_pull(settings, "civitai:123")
    with pytest.raises(UsageError, match="--name"):
        await plan_pull(settings, "civitai:123@456", folder="loras")
    named = await plan_pull(settings, "civitai:123@456", folder="loras", name="a.safetensors")
    assert named.source.url.endswith("/api/download/models/456") and named.source.needs_token


def test_tokens_from_settings_then_the_hubs_own_places(tmp_path: Path) -> None:
    settings = offline(tmp_path)
    assert download_tokens(settings, env={"HOME": str(tmp_path)}).huggingface is None
    hf_file = tmp_path / "hf-home" / "token"
    hf_file.parent.mkdir()
    hf_file.write_text("hf_from_the_cli_login_file_000\n")
    found = download_tokens(settings, env={"HF_HOME": str(hf_file.parent)})
    assert found.huggingface == "hf_from_the_cli_login_file_000"
    env = {"HF_TOKEN": "hf_env_token_0000000", "CIVITAI_TOKEN": "civitai_env_token_0000"}
    tokens = download_tokens(settings, env=env)
    assert (tokens.huggingface, tokens.civitai) == (env["HF_TOKEN"], env["CIVITAI_TOKEN"])
    assert "civitai_env_token_0000" not in repr(tokens)
    assert redact("error: civitai_env_token_0000 refused") == "error: *** refused"
    explicit = offline(tmp_path, COMFYFLEET_DOWNLOADS__CIVITAI_TOKEN="civitai_setting_tok_1")
    assert download_tokens(explicit, env=env).civitai == "civitai_setting_tok_1"


async def test_civitai_sources_need_a_token_plain_urls_get_none(tmp_path: Path) -> None:
    settings = offline(tmp_path)
    civitai = await plan_pull(settings, "civitai:1@2", folder="loras", name="a.safetensors")
    with pytest.raises(UsageError, match="Civitai API token") as missing:
        auth_headers(civitai.source, download_tokens(settings, env={}))
    assert "CIVITAI_TOKEN" in (missing.value.hint or "")
    tokens = download_tokens(
        settings, env={"HF_TOKEN": "hf_x_0123456789", "CIVITAI_TOKEN": "c" * 20}
    )
    assert auth_headers(civitai.source, tokens) == (("Authorization", f"Bearer {'c' * 20}"),)
    plain = await plan_pull(settings, "https://e.com/x.safetensors", folder="loras")
    assert auth_headers(plain.source, tokens) == ()
