"""comfy.workflow.deps: node classes, model files and input files a workflow needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.comfy.workflow.deps import (
    UNKNOWN_FOLDER,
    WorkflowDeps,
    deps_of_prompt,
    deps_of_ui,
    deps_of_workflow,
    embeddings_in,
    models_from_ui,
)
from comfyfleet.models.nodes import NodeCatalog

CONVERTED = [
    "default",
    "hidream_e1_1",
    "hunyuan_video_text_to_video",
    "image_qwen_image_instantx_controlnet",
    "lora",
    "sdxl_simple_example",
]


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def _load(shared_dir: Path, kind: str, name: str) -> dict[str, Any]:
    suffix = ".api.json" if kind == "api" else ".json"
    data: dict[str, Any] = json.loads(
        (shared_dir / "fixtures" / f"workflows-{kind}" / f"{name}{suffix}").read_text()
    )
    return data


@pytest.mark.parametrize("name", CONVERTED)
def test_ui_reading_agrees_with_the_frontends_conversion(
    shared_dir: Path, catalog: NodeCatalog, name: str
) -> None:
    """The UI file read as it is lists what the real frontend's API conversion needs."""
    from_api = deps_of_prompt(_load(shared_dir, "api", name), catalog)
    from_ui = deps_of_ui(_load(shared_dir, "ui", name))
    assert from_ui.to_json()["nodes"] == from_api.to_json()["nodes"]
    assert from_ui.models_by_folder() == from_api.models_by_folder()
    assert [i.name for i in from_ui.inputs] == [i.name for i in from_api.inputs]
    assert [n.node_ids for n in from_ui.nodes] == [n.node_ids for n in from_api.nodes]


def test_hidream_needs(shared_dir: Path, catalog: NodeCatalog) -> None:
    deps = deps_of_prompt(_load(shared_dir, "api", "hidream_e1_1"), catalog)
    assert deps.models_by_folder() == {
        "diffusion_models": ["hidream_e1_1_bf16.safetensors"],
        "text_encoders": [
            "clip_g_hidream.safetensors",
            "clip_l_hidream.safetensors",
            "llama_3.1_8b_instruct_fp8_scaled.safetensors",
            "t5xxl_fp8_e4m3fn_scaled.safetensors",
        ],
        "vae": ["ae.safetensors"],
    }
    (image,) = deps.inputs
    assert (image.name, image.kind, image.node_ids) == ("input.webp", "image", ("13",))
    assert deps.missing_nodes == []
    by_class = {n.class_type: n.node_ids for n in deps.nodes}
    assert by_class["CLIPTextEncode"] == ("6", "7")


def test_subgraph_models_carry_api_ids_and_urls(shared_dir: Path) -> None:
    ui = _load(shared_dir, "ui", "image_qwen_image_instantx_controlnet")
    models = {m.path: m for m in models_from_ui(ui)}
    lotus = models["diffusion_models/lotus-depth-d-v1-1.safetensors"]
    assert lotus.node_ids == ("106:87",)
    assert (
        lotus.url
        == "https://huggingface.co/Comfy-Org/lotus/resolve/main/lotus-depth-d-v1-1.safetensors"
    )


def test_bypassed_nodes_and_stale_metadata_do_not_count(shared_dir: Path) -> None:
    ui = _load(shared_dir, "ui", "lora")
    names = [m.name for m in models_from_ui(ui)]
    assert "MoXinV1.safetensors" not in names  # its LoraLoader is bypassed (mode 4)
    assert names == ["blindbox_v1_mix.safetensors", "dreamshaper_8.safetensors"]
    ui["nodes"] = [
        {**n, "widgets_values": ["other.safetensors"]}
        if n["type"] == "CheckpointLoaderSimple"
        else n
        for n in ui["nodes"]
    ]
    assert [m.name for m in models_from_ui(ui)] == ["blindbox_v1_mix.safetensors"]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("embedding:easynegative, bad hands", ["easynegative"]),
        ("(embedding:neg.pt:1.2), text", ["neg.pt"]),
        ("a photo\nembedding:sub/style", ["sub/style"]),
        ("no embeddingsembedding:x here", []),
        ("embedding:a embedding:b,", ["a", "b"]),
    ],
)
def test_embeddings_in_text(text: str, names: list[str]) -> None:
    assert embeddings_in(text) == names


def test_embeddings_and_unknown_nodes(catalog: NodeCatalog) -> None:
    prompt = {
        "2": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "embedding:easyneg cat", "clip": ["9", 1]},
        },
        "10": {
            "class_type": "MyLoraStack",
            "inputs": {"lora_name": "x.safetensors", "ipadapter_file": "ip.bin"},
        },
        "9": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": {"__value__": "a.ckpt"}},
        },
    }
    deps = deps_of_prompt(prompt, catalog)
    assert deps.models_by_folder() == {
        "checkpoints": ["a.ckpt"],
        "embeddings": ["easyneg"],
        "loras": ["x.safetensors"],
        UNKNOWN_FOLDER: ["ip.bin"],
    }
    assert deps.missing_nodes == ["MyLoraStack"]
    data = deps.to_json()
    assert data["missing_nodes"] == ["MyLoraStack"]
    assert list(data["nodes"]) == ["CLIPTextEncode", "CheckpointLoaderSimple", "MyLoraStack"]
    assert "missing_nodes" not in deps_of_prompt(prompt).to_json()  # nothing to check against


@dataclass(frozen=True)
class _Loaded:
    format: str
    api: dict[str, Any] | None
    ui: dict[str, Any] | None


def test_deps_of_workflow_dispatches(shared_dir: Path, catalog: NodeCatalog) -> None:
    api = _load(shared_dir, "api", "default")
    ui = _load(shared_dir, "ui", "default")
    from_api = deps_of_workflow(_Loaded("api", api, None), catalog)
    from_ui = deps_of_workflow(_Loaded("ui", None, ui))
    assert from_api.models_by_folder() == from_ui.models_by_folder()
    assert from_ui.to_json()["urls"] == {
        "checkpoints/v1-5-pruned-emaonly-fp16.safetensors": (
            "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
            "v1-5-pruned-emaonly-fp16.safetensors?download=true"
        )
    }
    assert isinstance(from_api, WorkflowDeps) and from_api.to_json()["urls"] == {}


def test_ui_with_catalog_is_converted_first(shared_dir: Path, catalog: NodeCatalog) -> None:
    pytest.importorskip("comfyfleet.comfy.workflow.convert", reason="the UI converter module")
    ui = _load(shared_dir, "ui", "lora")
    deps = deps_of_workflow(_Loaded("ui", None, ui), catalog)
    expected = deps_of_prompt(_load(shared_dir, "api", "lora"), catalog)
    assert deps.models_by_folder() == expected.models_by_folder()
    assert set(deps.to_json()["urls"]) == {
        "checkpoints/dreamshaper_8.safetensors",
        "loras/blindbox_v1_mix.safetensors",
    }


def test_input_files_are_named_without_annotations(catalog: NodeCatalog) -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png [input]"}},
        "2": {"class_type": "LoadImageOutput", "inputs": {"image": "made.png [output]"}},
        "3": {"class_type": "LoadImageMask", "inputs": {"image": "sub/m.png", "channel": "alpha"}},
        "4": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
    }
    deps = deps_of_prompt(prompt, catalog)
    assert [(i.name, i.kind, i.node_ids) for i in deps.inputs] == [
        ("a.png", "image", ("1",)),
        ("sub/m.png", "image", ("3",)),
        ("voice.wav", "audio", ("4",)),
    ]
    assert deps.models == ()
