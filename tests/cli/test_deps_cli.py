"""`comfyfleet workflow deps` through the installed command: packs, sources, exit codes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.catalog.standins import Standin, ThreadedStandin

OFFLINE = {"COMFYFLEET_CATALOG__OFFLINE": "1"}
CUSTOM = ["ImpactWildcardProcessor", "PromptBuilder", "DF_Integer"]


@pytest.fixture
def catalogs(shared_dir: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every catalog served by a stand-in in a thread; the env that points the CLI at it."""
    server = ThreadedStandin(Standin(shared_dir / "fixtures" / "comfyui-manager"))
    try:
        yield server.standin.env(tmp_path / "catalog-cache")
    finally:
        server.stop()


def _workflow(shared_dir: Path, tmp_path: Path, classes: list[str]) -> Path:
    api = json.loads((shared_dir / "fixtures/workflows-api/lora.api.json").read_text())
    for i, cls in enumerate(classes, start=100):
        api[str(i)] = {"class_type": cls, "inputs": {"text": "x"}}
    path = tmp_path / "wf.api.json"
    path.write_text(json.dumps(api))
    return path


def _manifest(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "models.toml"
    path.write_text(
        "[models]\n"
        '"dreamshaper_8.safetensors" = "civitai:4384@128713"\n'
        '"blindbox_v1_mix.safetensors" = "https://files.example.com/blindbox_v1_mix.safetensors"\n'
    )
    return {"COMFYFLEET_CATALOG__MODELS_MANIFEST": str(path)}


def test_offline_listing_without_a_target(cli: Any, shared_dir: Path) -> None:
    ui = shared_dir / "fixtures/workflows-ui/hidream_e1_1.json"
    result = cli("workflow", "deps", str(ui), "--json", env=OFFLINE)
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["ok"] is True and data["target"] is None
    assert data["checked"] == {"nodes": False, "models": False}
    assert all(n["status"] == "core" for n in data["node_classes"])
    files = {f"{m['folder']}/{m['name']}": m for m in data["model_files"]}
    t5 = files["text_encoders/t5xxl_fp8_e4m3fn_scaled.safetensors"]
    assert t5["status"] == "needed"
    assert [s["origin"] for s in t5["sources"]] == ["workflow", "model-list"]
    assert t5["sources"][0]["spec"].startswith("hf://Comfy-Org/HiDream-I1_ComfyUI/")
    assert data["next"][0].startswith("comfyfleet prepare ") and data["next"][0].endswith(" ID")
    assert {"nodes", "models", "inputs", "urls"} <= set(data)  # the offline listing's keys


def test_target_lacking_nodes_and_models(
    cli: Any, shared_dir: Path, tmp_path: Path, comfy_sandbox_thread: Any, catalogs: dict[str, str]
) -> None:
    wf = _workflow(shared_dir, tmp_path, [*CUSTOM, "NoSuchNodeAnywhere42"])
    target = comfy_sandbox_thread.url
    result = cli("workflow", "deps", str(wf), "--target", target, "--json", env=catalogs)
    assert result.code == 3, result.stderr
    data = result.json()
    assert data["ok"] is False and data["warnings"] == []
    assert data["catalogs"]["node-map"]["origin"] == "network"
    assert data["missing"]["nodes"] == sorted([*CUSTOM, "NoSuchNodeAnywhere42"])
    assert data["unresolved"]["nodes"] == ["NoSuchNodeAnywhere42", "PromptBuilder"]
    assert sorted(data["unresolved"]["models"]) == [
        "checkpoints/dreamshaper_8.safetensors",
        "loras/blindbox_v1_mix.safetensors",
    ]
    builder = next(n for n in data["node_classes"] if n["class"] == "PromptBuilder")
    assert builder["chosen"] is None and builder["choose"].startswith("--pack PromptBuilder=")
    assert len(builder["candidates"]) == 3

    human = cli("workflow", "deps", str(wf), "--target", target, env=catalogs)
    assert human.code == 3
    assert "missing  PromptBuilder" in human.stdout
    assert "choose with --pack PromptBuilder=ComfyUI-WildPromptor" in human.stdout
    assert "unknown: no catalog lists it" in human.stdout
    assert "no source known" in human.stdout
    assert "cannot be resolved" in human.stderr
    assert "settle what is unresolved above" in human.stdout
    assert "comfyfleet prepare" not in human.stdout


def test_choices_and_a_manifest_resolve_everything(
    cli: Any, shared_dir: Path, tmp_path: Path, comfy_sandbox_thread: Any, catalogs: dict[str, str]
) -> None:
    wf = _workflow(shared_dir, tmp_path, CUSTOM)
    env = {**catalogs, **_manifest(tmp_path)}
    args = ["workflow", "deps", str(wf), "--target", comfy_sandbox_thread.url]
    result = cli(*args, "--pack", "PromptBuilder=MultiModel", "--json", env=env)
    assert result.code == 0, result.stdout + result.stderr
    data = result.json()
    assert data["ok"] is True and data["unresolved"] == {"nodes": [], "models": []}
    assert data["packs"] == ["derfuu", "comfyui-impact-pack", "MultiModel"]
    assert data["next"][0] == f"comfyfleet prepare {wf} ID --pack PromptBuilder=MultiModel"
    assert "comfyfleet nodes install ID MultiModel" in data["next"]
    pulls = [c for c in data["next"] if " models pull " in c]
    assert any(
        "civitai:4384@128713 --folder checkpoints --name dreamshaper_8.safetensors" in c
        for c in pulls
    )
    human = cli(*args, "--pack", "PromptBuilder=MultiModel", env=env)
    assert human.code == 0, human.stderr
    assert "next:" in human.stdout and "or step by step:" in human.stdout
    assert "→ MultiModel" in human.stdout


def test_dead_catalogs_fall_back_and_say_so(
    cli: Any, shared_dir: Path, tmp_path: Path, catalogs: dict[str, str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/extension-node-map.json"
    env = {**catalogs, "COMFYFLEET_CATALOG__NODE_MAP_URL": dead}
    wf = _workflow(shared_dir, tmp_path, ["ImpactWildcardProcessor"])
    result = cli("workflow", "deps", str(wf), "--json", env=env)
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["catalogs"]["node-map"]["origin"] == "shipped"
    (warning,) = data["warnings"]
    assert "extension-node-map.json" in warning and "shipped" in warning
    human = cli("workflow", "deps", str(wf), env=env)
    assert "warning: could not fetch extension-node-map.json" in human.stderr.replace("\n", " ")
    assert "comfyui-impact-pack" in human.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--pack", "PromptBuilder"], ["CLASS=PACK"]),
        (["--pack", "KSamplerX=foo"], ["KSamplerX", "does not use"]),
        (["--target", "http://127.0.0.1:9", "--object-info", "x.json"], ["not both"]),
    ],
)
def test_bad_usage_exits_2(cli: Any, shared_dir: Path, args: list[str], words: list[str]) -> None:
    api = shared_dir / "fixtures/workflows-api/lora.api.json"
    result = cli("workflow", "deps", str(api), *args, env=OFFLINE)
    assert result.code == 2, result.stdout + result.stderr
    for word in words:
        assert word in result.stderr


def test_help_documents_the_exit_codes(cli: Any) -> None:
    result = cli("workflow", "deps", "--help")
    assert result.code == 0
    text = " ".join(result.stdout.split())
    assert "--target" in text and "--pack" in text and "--object-info" in text
    assert "3 the target lacks" in text
