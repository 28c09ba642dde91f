"""Model sources: what a source text names, and the checks that keep values command-safe."""

from __future__ import annotations

import pytest

from comfyfleet.catalog.sources import (
    CivitaiRef,
    HfRef,
    Hubs,
    UrlRef,
    check_filename,
    check_sha256,
    check_url,
    make_source,
    parse_ref,
)
from comfyfleet.errors import UnsafeSource

HUBS = Hubs()
STANDIN = Hubs("http://127.0.0.1:9999/hf", "http://127.0.0.1:9999/civitai")

REFS = [
    ("hf://Comfy-Org/flux1-schnell/flux1-schnell-fp8.safetensors",
     HfRef("Comfy-Org/flux1-schnell", "flux1-schnell-fp8.safetensors")),
    ("hf://org/repo@v1.0/split_files/vae/ae.safetensors",
     HfRef("org/repo", "split_files/vae/ae.safetensors", "v1.0")),
    ("https://huggingface.co/Comfy-Org/HiDream-I1_ComfyUI/resolve/main/split_files/vae/ae.safetensors?download=true",
     HfRef("Comfy-Org/HiDream-I1_ComfyUI", "split_files/vae/ae.safetensors")),
    ("https://huggingface.co/Lykon/DreamShaper/blob/abc123/DreamShaper_8_pruned.safetensors",
     HfRef("Lykon/DreamShaper", "DreamShaper_8_pruned.safetensors", "abc123")),
    ("civitai:14856@32988", CivitaiRef(14856, 32988)),
    ("civitai:14856", CivitaiRef(14856, None)),
    ("https://civitai.com/models/14856/moxin?modelVersionId=32988", CivitaiRef(14856, 32988)),
    ("https://civitai.com/api/download/models/128713?type=Model&format=SafeTensor",
     CivitaiRef(None, 128713, "type=Model&format=SafeTensor")),
    ("https://github.com/madebyollin/taesd/raw/main/taef1_decoder.pth",
     UrlRef("https://github.com/madebyollin/taesd/raw/main/taef1_decoder.pth")),
    # a Hugging Face URL that is not a file download stays a plain URL
    ("https://huggingface.co/Lykon/DreamShaper", UrlRef("https://huggingface.co/Lykon/DreamShaper")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "ref"), REFS)
def test_parse_ref(text: str, ref: object) -> None:
    assert parse_ref(text, HUBS) == ref


def test_hub_sources_are_rebuilt_on_the_configured_hubs() -> None:
    hf = make_source(
        parse_ref("https://huggingface.co/o/r/resolve/main/a/b c.safetensors".replace(" ", "%20"),
                  STANDIN),
        folder="vae", filename="bc.safetensors", hubs=STANDIN, origin="workflow",
    )  # fmt: skip
    assert hf.url == "http://127.0.0.1:9999/hf/o/r/resolve/main/a/b%20c.safetensors"
    assert hf.kind == "huggingface" and not hf.needs_token
    assert hf.spec == "hf://o/r/a/b c.safetensors"
    civ = make_source(
        CivitaiRef(1, 2), folder="loras", filename="x.safetensors", hubs=STANDIN, origin="user"
    )
    assert civ.url == "http://127.0.0.1:9999/civitai/api/download/models/2"
    assert civ.kind == "civitai" and civ.needs_token and civ.spec == "civitai:1@2"
    with pytest.raises(UnsafeSource, match="no version"):
        make_source(CivitaiRef(1, None), folder="loras", filename="x", hubs=STANDIN, origin="user")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/model.safetensors",
        "file:///etc/passwd",
        "https://example.com/a model.safetensors",
        "https://example.com/x`id`.safetensors",
        'https://example.com/x".safetensors',
        "https://example.com/x\n.safetensors",
        "https://user:secret@example.com/x.safetensors",
        "https:///nohost.safetensors",
        "not a url",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeSource) as err:
        check_url(url)
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(
    "name",
    [
        "my model.safetensors",
        "x;rm -rf ~.safetensors",
        "$(id).safetensors",
        "`id`.pt",
        "a|b.pt",
        "../escape.safetensors",
        "/abs/path.safetensors",
        "sub//x.pt",
        "-rf.safetensors",
        "quote'.pt",
        "",
    ],
)
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeSource):
        check_filename(name)


@pytest.mark.parametrize(
    "name",
    [
        "v1-5-pruned-emaonly-fp16.safetensors",
        "SDXL/controlnet-union-sdxl-1.0/diffusion_pytorch_model.safetensors",
        "SD1.5\\lora+v2@x=1,y%20~.safetensors",
        "llama_3.1_8b_instruct_fp8_scaled.safetensors",
    ],
)
def test_ordinary_file_names_pass(name: str) -> None:
    assert check_filename(name) == name.replace("\\", "/")


def test_sha256_is_checked_and_normalized() -> None:
    digest = "AB" * 32
    assert check_sha256(digest) == "ab" * 32
    with pytest.raises(UnsafeSource):
        check_sha256("abc")
    with pytest.raises(UnsafeSource):
        make_source(UrlRef("https://x.org/a.pt"), folder="vae", filename="a.pt", hubs=HUBS,
                    origin="user", sha256="zz" * 32)  # fmt: skip
