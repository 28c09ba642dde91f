"""Model files -> sources: workflow URLs, ComfyUI-Manager's model list, the manifest, hubs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.catalog.standins import Standin

from comfyfleet.catalog import Catalogs, WantedModel
from comfyfleet.catalog.fetch import shipped
from comfyfleet.catalog.manifest import load_manifest
from comfyfleet.catalog.models import ModelIndex
from comfyfleet.catalog.sources import CivitaiRef, HfRef, Hubs
from comfyfleet.errors import UsageError

SHA = "3c" * 32


@pytest.fixture(scope="module")
def model_index() -> ModelIndex:
    return ModelIndex(shipped("model-list"))


@pytest.mark.parametrize(
    ("folder", "name", "url_part"),
    [
        # one entry of that name (save_path default + type VAE -> vae)
        ("vae", "vae-ft-mse-840000-ema-pruned.safetensors", "sd-vae-ft-mse-original"),
        # save_path `text_encoders/t5` -> folder text_encoders, entry found by file name
        ("text_encoders", "t5xxl_fp8_e4m3fn_scaled.safetensors", "flux_text_encoders"),
        # twenty entries share this name: the subfolder path settles which
        (
            "controlnet",
            "SDXL/controlnet-tile-sdxl-1.0/diffusion_pytorch_model.safetensors",
            "xinsir/controlnet-tile-sdxl-1.0",
        ),
        # folder unknown to the workflow: the list's folder is used
        ("unknown", "taef1_decoder.pth", "taesd"),
    ],
)
def test_model_list_matches(model_index: ModelIndex, folder: str, name: str, url_part: str) -> None:
    listed, note = model_index.find(folder, name)
    assert note is None and listed is not None and url_part in listed.url


def test_model_list_never_guesses(model_index: ModelIndex) -> None:
    listed, note = model_index.find("controlnet", "diffusion_pytorch_model.safetensors")
    assert listed is None and note is not None and "none was picked" in note
    # the same name in another folder is another file
    assert model_index.find("loras", "vae-ft-mse-840000-ema-pruned.safetensors") == (None, None)
    assert model_index.find("checkpoints", "not-in-any-list.safetensors") == (None, None)


def _manifest(tmp_path: Path, text: str, name: str = "models.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_manifest_forms(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        f"""
[models]
"style.safetensors" = "https://files.example.com/style.safetensors"
"loras/detail.safetensors" = {{ source = "civitai:12@34", sha256 = "{SHA}" }}

[models."hf-model.safetensors"]
url = "hf://org/repo@dev/hf-model.safetensors"
folder = "unet"
""",
    )
    manifest = load_manifest(path, Hubs(), required=True)
    entry = manifest.find("checkpoints", "style.safetensors")
    assert entry is not None and entry.ref.__class__.__name__ == "UrlRef"
    detail = manifest.find("loras", "detail.safetensors")
    assert detail is not None and detail.ref == CivitaiRef(12, 34) and detail.sha256 == SHA
    assert manifest.find("checkpoints", "detail.safetensors") is None
    hf = manifest.find("unknown", "sub/hf-model.safetensors")  # matched by base name
    assert hf is not None and hf.ref == HfRef("org/repo", "hf-model.safetensors", "dev")
    assert hf.folder == "diffusion_models"  # legacy folder names are canonical
    as_json = _manifest(
        tmp_path, '{"models": {"a.pt": "https://x.example/a.pt"}}', name="models.json"
    )
    assert load_manifest(as_json, Hubs(), required=True).find("vae", "a.pt") is not None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('[models]\n"a.pt" = "ftp://x/a.pt"', ["'a.pt'", "download URL"]),
        ('[models]\n"a b.pt" = "https://x/a.pt"', ["'a b.pt'", "shell"]),
        ('[models]\n"a.pt" = { url = "https://x/a.pt", colour = "red" }', ["colour"]),
        ('[models]\n"a.pt" = { sha256 = "00" }', ["no source"]),
        ('[models]\n"a.pt" = { url = "https://x/a.pt", sha256 = "00" }', ["sha256"]),
        ("[models\n", ["not valid TOML"]),
        ('models = "x"', ["[models]"]),
    ],
)
def test_bad_manifests_are_clear_errors(tmp_path: Path, body: str, words: list[str]) -> None:
    path = _manifest(tmp_path, body)
    with pytest.raises(UsageError) as err:
        load_manifest(path, Hubs(), required=True)
    text = str(err.value)
    assert str(path) in text
    for word in words:
        assert word in text


def test_a_missing_manifest_is_an_error_only_when_named(tmp_path: Path) -> None:
    assert load_manifest(tmp_path / "none.toml", Hubs(), required=False).entries is None
    with pytest.raises(UsageError, match="does not exist"):
        load_manifest(tmp_path / "none.toml", Hubs(), required=True)


async def test_sources_in_order_with_hub_lookups(
    standin: Standin, standin_settings: Any, tmp_path: Path
) -> None:
    manifest = _manifest(
        tmp_path,
        """
[models]
"vae-ft-mse-840000-ema-pruned.safetensors" = "https://mirror.example.com/vae.safetensors"
"newest.safetensors" = { source = "civitai:77", folder = "loras" }
""",
    )
    standin.hf_repos["stabilityai/sd-vae-ft-mse-original"] = {"gated": False}
    standin.hf_repos["private/repo"] = 401
    standin.hf_repos["gated/repo"] = {"gated": "manual"}
    standin.civitai_models[77] = {"id": 77, "modelVersions": [{"id": 702}, {"id": 701}]}
    standin.civitai_hashes[SHA] = {
        "id": 555,
        "modelId": 55,
        "files": [{"name": "found.safetensors", "hashes": {"SHA256": SHA.upper()}}],
    }
    settings = standin_settings(COMFYFLEET_CATALOG__MODELS_MANIFEST=str(manifest))
    hf = f"{standin.url}/hf"
    wanted = [
        WantedModel(
            "vae",
            "vae-ft-mse-840000-ema-pruned.safetensors",
            "https://huggingface.co/stabilityai/sd-vae-ft-mse-original/resolve/main/"
            "vae-ft-mse-840000-ema-pruned.safetensors?download=true",
        ),
        WantedModel("loras", "newest.safetensors"),
        WantedModel("checkpoints", "by-hash.safetensors", hash=SHA, hash_type="sha256"),
        WantedModel("vae", "p.safetensors", "hf://private/repo/p.safetensors"),
        WantedModel("vae", "g.safetensors", "hf://gated/repo/g.safetensors"),
        WantedModel("vae", "bad name.safetensors", "https://x.example/bad.safetensors"),
        WantedModel("loras", "nowhere.safetensors"),
        WantedModel("loras", "odd.safetensors", "https://x.example/$(id) odd.safetensors"),
    ]
    async with Catalogs(settings) as catalogs:
        found = await catalogs.resolve_models(wanted)
        assert catalogs.warnings == []
    vae, newest, by_hash, private, gated, bad, nowhere, odd = found
    # the user's manifest first; the model list names the same Hugging Face file as the
    # workflow: kept once
    assert [(s.origin, s.kind) for s in vae.sources] == [
        ("manifest", "url"),
        ("workflow", "huggingface"),
    ]
    assert vae.sources[1].url == (
        f"{hf}/stabilityai/sd-vae-ft-mse-original/resolve/main/"
        "vae-ft-mse-840000-ema-pruned.safetensors"
    )
    assert not vae.sources[1].needs_token
    assert all(s.filename == "vae-ft-mse-840000-ema-pruned.safetensors" for s in vae.sources)
    (civ,) = newest.sources
    assert civ.url == f"{standin.url}/civitai/api/download/models/702" and civ.needs_token
    (hashed,) = by_hash.sources
    assert hashed.origin == "civitai-hash" and hashed.sha256 == SHA
    assert hashed.filename == "by-hash.safetensors" and hashed.spec == "civitai:55@555"
    assert private.sources[0].needs_token and gated.sources[0].needs_token
    assert not bad.sources and "shell" in bad.problems[0]
    assert not nowhere.resolved and nowhere.problems == ()
    assert not odd.sources and "workflow source skipped" in odd.problems[0]
    hits = len(standin.requests)
    async with Catalogs(settings) as catalogs:  # hub answers are remembered
        assert await catalogs.resolve_models(wanted) == found
    assert len(standin.requests) == hits


async def test_a_dead_hub_is_asked_once_and_said(standin: Standin, standin_settings: Any) -> None:
    standin.failing.update({f"/civitai/api/v1/model-versions/by-hash/{c * 64}" for c in "ab"})
    wanted = [WantedModel("loras", f"{c}.safetensors", hash=c * 64) for c in "ab"]
    async with Catalogs(standin_settings()) as catalogs:
        found = await catalogs.resolve_models(wanted)
        warnings = catalogs.warnings
    assert not any(f.resolved for f in found)
    assert len(warnings) == 1 and "civitai" in warnings[0] and "HTTP 500" in warnings[0]


async def test_the_default_manifest_lives_in_the_config_dir(
    tmp_path: Path, offline_settings: Any
) -> None:
    catalogs = Catalogs(offline_settings)
    assert catalogs.cache_dir == offline_settings.cache_dir() / "catalog"
    assert catalogs.manifest_path == offline_settings.config_dir() / "models.toml"
    wanted = [WantedModel("loras", "mine.safetensors")]
    async with catalogs:
        assert not (await catalogs.resolve_models(wanted))[0].resolved  # no file: no entries
    catalogs.manifest_path.parent.mkdir(parents=True)
    catalogs.manifest_path.write_text('[models]\n"mine.safetensors" = "https://x.example/m.pt"\n')
    async with Catalogs(offline_settings) as fresh:
        (found,) = await fresh.resolve_models(wanted)
    assert [(s.origin, s.url, s.filename) for s in found.sources] == [
        ("manifest", "https://x.example/m.pt", "mine.safetensors")
    ]


async def test_an_unknown_folder_is_taken_from_the_model_list(offline_settings: Any) -> None:
    wanted = [
        WantedModel("unknown", "taef1_decoder.pth", "https://mirror.example.com/taef1_decoder.pth"),
        WantedModel("unknown", "mystery.safetensors", "https://x.example/mystery.safetensors"),
    ]
    async with Catalogs(offline_settings) as catalogs:
        taef1, mystery = await catalogs.resolve_models(wanted)
    assert [(s.origin, s.folder) for s in taef1.sources] == [
        ("workflow", "vae_approx"),
        ("model-list", "vae_approx"),
    ]
    assert not mystery.sources and "folder" in mystery.problems[0]
