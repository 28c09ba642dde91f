"""`services.deps.workflow_needs` against a live sandbox ComfyUI (catalogs: shipped copies)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.config import Settings
from comfyfleet.errors import UsageError
from comfyfleet.services.deps import WorkflowNeeds, parse_pack_choices, workflow_needs
from comfyfleet.services.targets import Target

# custom classes from the extension-node-map: one pack, several packs, a pattern, nobody
CUSTOM = {
    "ImpactWildcardProcessor": "comfyui-impact-pack",
    "PromptBuilder": None,
    "DF_Integer": "derfuu",
    "NoSuchNodeAnywhere42": None,
}


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _api_with_custom_nodes(shared_dir: Path, tmp_path: Path) -> Path:
    api = json.loads((shared_dir / "fixtures/workflows-api/lora.api.json").read_text())
    for i, cls in enumerate(CUSTOM, start=100):
        api[str(i)] = {"class_type": cls, "inputs": {"text": "x"}}
    return _write(tmp_path, "custom.api.json", api)


def _by_class(needs: WorkflowNeeds) -> dict[str, Any]:
    return {n.class_type: n for n in needs.nodes}


def _by_path(needs: WorkflowNeeds) -> dict[str, Any]:
    return {m.file.path: m for m in needs.models}


async def test_missing_nodes_on_a_live_target(
    comfy_sandbox: Any, shared_dir: Path, tmp_path: Path, offline_settings: Settings
) -> None:
    path = _api_with_custom_nodes(shared_dir, tmp_path)
    target = Target(comfy_sandbox.url)
    needs = await workflow_needs(path, target=target, settings=offline_settings)
    nodes = _by_class(needs)
    assert needs.checked_nodes and needs.checked_models
    assert {n.class_type for n in needs.missing_nodes} == set(CUSTOM)
    for cls in ("KSampler", "LoraLoader", "CheckpointLoaderSimple", "SaveImage"):
        assert nodes[cls].status == "present" and nodes[cls].resolution is None
    for cls, pack in CUSTOM.items():
        res = nodes[cls].resolution
        assert (res.chosen.pack.id if res.chosen else None) == pack
    assert nodes["PromptBuilder"].resolution.ambiguous
    assert nodes["NoSuchNodeAnywhere42"].resolution.unknown
    assert needs.blocking
    assert needs.to_json()["unresolved"]["nodes"] == ["NoSuchNodeAnywhere42", "PromptBuilder"]
    assert needs.packs == ["derfuu", "comfyui-impact-pack"]

    # a choice settles the ambiguous class; the unknown one still blocks
    chosen = await workflow_needs(
        path,
        target=target,
        settings=offline_settings,
        choices=parse_pack_choices(["PromptBuilder=FaberVS/MultiModel"]),
    )
    assert chosen.to_json()["unresolved"]["nodes"] == ["NoSuchNodeAnywhere42"]
    assert "MultiModel" in chosen.packs
    # prepare is proposed only once everything is settled; the installs that can be done are
    assert not any(" prepare " in c for c in chosen.next_commands())
    assert "comfyfleet nodes install ID MultiModel" in chosen.next_commands()
    with pytest.raises(UsageError, match="does not use"):
        await workflow_needs(path, target=target, settings=offline_settings, choices={"Nope": "x"})


async def test_missing_models_then_present(
    comfy_sandbox: Any, shared_dir: Path, offline_settings: Settings
) -> None:
    ui = shared_dir / "fixtures/workflows-ui/controlnet_example.json"
    target = Target(comfy_sandbox.url)
    needs = await workflow_needs(ui, target=target, settings=offline_settings)
    models = _by_path(needs)
    assert set(models) == {
        "checkpoints/DreamShaper_8_pruned.safetensors",
        "controlnet/control_v11p_sd15_scribble_fp16.safetensors",
        "vae/vae-ft-mse-840000-ema-pruned.safetensors",
    }
    for need in models.values():
        assert need.status == "missing"
        first = need.sources[0]
        assert first.origin == "workflow" and first.kind == "huggingface"
        assert first.folder == need.file.folder and first.filename == need.file.name
    assert not needs.missing_nodes and not needs.blocking
    commands = needs.next_commands()
    assert commands[0].startswith("comfyfleet prepare ")
    assert any("models pull ID hf://Lykon/DreamShaper/" in c for c in commands)

    root = comfy_sandbox.root / "models"
    for rel in models:
        folder, name = rel.split("/", 1)
        (root / folder / name).write_bytes(b"weights")
    again = await workflow_needs(ui, target=target, settings=offline_settings)
    assert all(m.status == "present" and not m.sources for m in again.models)
    assert again.next_commands() == [] and not again.blocking


async def test_model_lookups_follow_comfyui(
    comfy_sandbox: Any, shared_dir: Path, tmp_path: Path, offline_settings: Settings
) -> None:
    api = json.loads((shared_dir / "fixtures/workflows-api/lora.api.json").read_text())
    api["6"]["inputs"]["text"] = "a cat, embedding:easynegative, (embedding:bad-hands:1.2)"
    api["11"]["inputs"]["lora_name"] = "blindbox_v1_mix.safetensors"
    path = _write(tmp_path, "lookups.api.json", api)
    root = comfy_sandbox.root / "models"
    (root / "loras" / "SDXL").mkdir(parents=True)
    (root / "loras" / "SDXL" / "blindbox_v1_mix.safetensors").write_bytes(b"w")
    (root / "embeddings" / "easynegative.safetensors").write_bytes(b"w")  # found without ext
    (root / "clip").mkdir(exist_ok=True)
    needs = await workflow_needs(path, target=Target(comfy_sandbox.url), settings=offline_settings)
    models = _by_path(needs)
    assert models["embeddings/easynegative"].status == "present"
    assert models["embeddings/bad-hands"].status == "missing"
    lora = models["loras/blindbox_v1_mix.safetensors"]
    assert lora.status == "missing" and lora.present_as == ("SDXL/blindbox_v1_mix.safetensors",)
    # nothing knows where these come from: the target lacks them and that blocks
    assert needs.blocking
    assert "loras/blindbox_v1_mix.safetensors" in needs.to_json()["unresolved"]["models"]


async def test_without_a_target_everything_is_needed_and_resolved(
    shared_dir: Path, tmp_path: Path, offline_settings: Settings
) -> None:
    ui = json.loads((shared_dir / "fixtures/workflows-ui/default.json").read_text())
    extra = copy.deepcopy(next(n for n in ui["nodes"] if n["type"] == "EmptyLatentImage"))
    extra.update(
        id=99,
        type="PromptBuilder",
        inputs=[],
        outputs=[],
        properties={"cnr_id": "comfyui-wildpromptor", "ver": "1.0.3"},
    )
    ui["nodes"].append(extra)
    path = _write(tmp_path, "hinted.json", ui)
    needs = await workflow_needs(path, target=None, settings=offline_settings)
    nodes = _by_class(needs)
    assert nodes["KSampler"].status == "core" and nodes["KSampler"].resolution is None
    builder = nodes["PromptBuilder"]
    assert builder.status == "needed"
    assert builder.resolution.chosen.why == "cnr_id"
    assert builder.resolution.chosen.version == "1.0.3"
    (ckpt,) = needs.models
    assert ckpt.status == "needed" and ckpt.sources[0].origin == "workflow"
    assert not needs.checked_nodes and not needs.blocking
    data = needs.to_json()
    assert data["missing"] == {
        "nodes": ["PromptBuilder"],
        "models": ["checkpoints/v1-5-pruned-emaonly-fp16.safetensors"],
    }
    assert data["packs"] == ["ComfyUI-WildPromptor"]  # ids are matched ignoring case
    assert data["catalogs"]["node-map"]["origin"] == "shipped"
    assert data["nodes"]["KSampler"] == 1  # the offline listing's keys are kept


async def test_object_info_file_checks_node_classes_only(
    shared_dir: Path, tmp_path: Path, offline_settings: Settings, comfy_fixtures: Path
) -> None:
    path = _api_with_custom_nodes(shared_dir, tmp_path)
    needs = await workflow_needs(
        path,
        target=None,
        settings=offline_settings,
        object_info=comfy_fixtures / "GET_object_info_full.json",
    )
    assert needs.checked_nodes and not needs.checked_models
    assert {n.class_type for n in needs.missing_nodes} == set(CUSTOM)
    assert all(m.status == "needed" for m in needs.models)
    assert needs.blocking  # unknown and ambiguous classes the server lacks


async def test_model_list_adds_sources_the_workflow_lacks(
    comfy_sandbox: Any, shared_dir: Path, offline_settings: Settings
) -> None:
    ui = shared_dir / "fixtures/workflows-ui/hidream_e1_1.json"
    target = Target(comfy_sandbox.url, name="box")
    needs = await workflow_needs(ui, target=target, settings=offline_settings)
    models = _by_path(needs)
    assert len(models) == 6 and all(m.status == "missing" for m in models.values())
    t5 = models["text_encoders/t5xxl_fp8_e4m3fn_scaled.safetensors"]
    assert [(s.origin, s.spec.split("/")[3]) for s in t5.sources] == [
        ("workflow", "HiDream-I1_ComfyUI"),
        ("model-list", "flux_text_encoders"),
    ]
    assert all(s.filename == "t5xxl_fp8_e4m3fn_scaled.safetensors" for s in t5.sources)
    # an instance target is named in the commands
    commands = needs.next_commands()
    assert commands[0] == f"comfyfleet prepare {ui} box"
    assert sum(c.startswith("comfyfleet models pull box hf://") for c in commands) == 6
