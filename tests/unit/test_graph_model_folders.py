"""graph.model_folders: which inputs name model files, and where those live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.graph.model_folders import (
    FOLDER_DIRS,
    MODEL_EXTENSIONS,
    MODEL_INPUTS,
    canonical_folder,
    model_folder_for,
    model_inputs_of,
    vae_options,
    with_model_lists,
)
from comfyfleet.models.nodes import NodeCatalog, parse_input_spec


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def _body(comfy_fixtures: Path, name: str) -> Any:
    return json.loads((comfy_fixtures / name).read_text())["response"]["body"]


def test_folders_are_the_servers_folders(comfy_fixtures: Path) -> None:
    assert list(FOLDER_DIRS) == _body(comfy_fixtures, "GET_models.json")
    paths = _body(comfy_fixtures, "GET_internal_folder_paths.json")
    for folder, dirs in FOLDER_DIRS.items():
        assert [f"<COMFYUI>/{d}" for d in dirs] == paths[folder]


def test_every_table_entry_is_a_combo_of_that_node(catalog: NodeCatalog) -> None:
    for class_type, inputs in MODEL_INPUTS.items():
        assert class_type in catalog, class_type
        for name, folder in inputs.items():
            spec = catalog[class_type].inputs[name]
            assert spec.is_combo, (class_type, name)
            assert folder in FOLDER_DIRS


def test_every_stock_model_list_is_known(catalog: NodeCatalog) -> None:
    """Stock combos that are empty on a server without models are model lists with a folder."""
    uploads = ("image_upload", "video_upload", "audio_upload", "file_upload")
    for class_type in catalog:
        node = catalog[class_type]
        found = dict(model_inputs_of(node))
        for spec in node.visible_inputs():
            if spec.choices == () and not any(spec.options.get(u) for u in uploads):
                if class_type in ("LoadLatent", "OpenAIInputFiles", "GeminiInputFiles"):
                    continue  # input-folder files, not models
                assert found.get(spec.name), (class_type, spec.name)


@pytest.mark.parametrize(
    ("class_type", "name", "spec", "folder"),
    [
        ("CheckpointLoaderSimple", "ckpt_name", None, "checkpoints"),
        ("DualCLIPLoader", "clip_name2", None, "text_encoders"),
        ("UNETLoader", "unet_name", None, "diffusion_models"),
        ("CheckpointLoader", "config_name", None, "configs"),
        ("MyLoraStack", "lora_name", [["a.safetensors"]], "loras"),
        ("MyLoader", "ckpt_name", [[]], "checkpoints"),
        ("IPAdapterLoader", "ipadapter_file", [["ip.bin"]], None),  # a model, folder unknown
        ("MyNode", "sampler_name", [["euler", "ddim"]], None),
        ("MyNode", "image", [["a.png"], {"image_upload": True}], None),
        ("MyNode", "clip_name", ["STRING", {}], None),
    ],
)
def test_model_folder_for(class_type: str, name: str, spec: Any, folder: str | None) -> None:
    parsed = None if spec is None else parse_input_spec(name, spec, "required")
    assert model_folder_for(class_type, name, parsed) == folder


def test_aliases_and_extensions() -> None:
    assert canonical_folder("unet") == "diffusion_models"
    assert canonical_folder("clip") == "text_encoders"
    assert canonical_folder("loras") == "loras"
    assert ".safetensors" in MODEL_EXTENSIONS and ".sft" in MODEL_EXTENSIONS


def test_vae_options_add_taesd_pairs_and_pixel_space() -> None:
    approx = ["taesd_decoder.pth", "taesd_encoder.pth", "taesdxl_decoder.pth"]
    assert vae_options(["ae.safetensors"], approx) == ["ae.safetensors", "taesd", "pixel_space"]


def test_with_model_lists_replaces_model_combos_only(catalog: NodeCatalog) -> None:
    lists = {"checkpoints": ["a.safetensors"], "unet": ["u.gguf"], "upscale_models": ["x.pth"]}
    patched = with_model_lists(catalog, lists)
    assert patched["CheckpointLoaderSimple"].inputs["ckpt_name"].choices == ("a.safetensors",)
    assert patched["UNETLoader"].inputs["unet_name"].choices == ("u.gguf",)  # legacy key
    upscale = patched["UpscaleModelLoader"].inputs["model_name"]
    assert upscale.raw[0] == "COMBO" and upscale.choices == ("x.pth",)  # V3 shape kept
    assert patched["VAELoader"].inputs["vae_name"].choices == ("pixel_space",)  # no "vae" list
    assert patched["KSampler"].raw == catalog["KSampler"].raw
    assert catalog["CheckpointLoaderSimple"].inputs["ckpt_name"].choices == ()  # untouched
    trained = with_model_lists(catalog, {"loras": ["l.safetensors"], "vae": ["v.sft"]})
    assert trained["TrainLoraNode"].inputs["existing_lora"].choices == ("l.safetensors", "[None]")
    assert trained["VAELoader"].inputs["vae_name"].choices == ("v.sft", "pixel_space")
