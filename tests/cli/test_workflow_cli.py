"""`comfyfleet workflow convert|validate|deps` through the installed command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

UI_TO_API = ["default", "lora", "sdxl_simple_example", "hidream_e1_1"]


def test_help_lists_the_commands(cli: Any) -> None:
    result = cli("--help")
    assert result.code == 0
    for name in ("run", "workflow", "demo", "sandbox"):
        assert name in result.stdout
    assert cli("--version").stdout.startswith("comfyfleet ")


@pytest.mark.parametrize("name", UI_TO_API)
def test_convert_matches_the_real_frontend(
    cli: Any, shared_dir: Path, comfy_fixtures: Path, tmp_path: Path, name: str
) -> None:
    ui = shared_dir / "fixtures" / "workflows-ui" / f"{name}.json"
    expected = json.loads(
        (shared_dir / "fixtures" / "workflows-api" / f"{name}.api.json").read_text()
    )
    out = tmp_path / f"{name}.api.json"
    info = comfy_fixtures / "GET_object_info_full.json"
    result = cli("workflow", "convert", str(ui), "--object-info", str(info), "-o", str(out))
    assert result.code == 0, result.stderr
    assert json.loads(out.read_text()) == expected
    stdout = cli("workflow", "convert", str(ui), "--object-info", str(info))
    assert json.loads(stdout.stdout) == expected


def test_convert_needs_exactly_one_catalog_source(cli: Any, shared_dir: Path) -> None:
    ui = shared_dir / "fixtures" / "workflows-ui" / "default.json"
    result = cli("workflow", "convert", str(ui))
    assert result.code == 2
    assert "--object-info" in result.stderr and "--target" in result.stderr


def test_convert_missing_object_info_file(cli: Any, shared_dir: Path) -> None:
    ui = shared_dir / "fixtures" / "workflows-ui" / "default.json"
    result = cli("workflow", "convert", str(ui), "--object-info", "nope.json")
    assert result.code == 2
    assert "nope.json" in result.stderr and "does not exist" in result.stderr


def test_validate_reports_missing_model_with_allowed_values(
    cli: Any, shared_dir: Path, comfy_fixtures: Path
) -> None:
    # The captured server had no checkpoints: the stock workflow's checkpoint is not in the list.
    ui = shared_dir / "fixtures" / "workflows-ui" / "default.json"
    info = comfy_fixtures / "GET_object_info_full.json"
    result = cli("workflow", "validate", str(ui), "--object-info", str(info))
    assert result.code == 3, result.stdout + result.stderr
    assert "node 4 (CheckpointLoaderSimple)" in result.stderr
    assert "ckpt_name" in result.stderr
    assert "v1-5-pruned-emaonly-fp16.safetensors" in result.stderr
    as_json = cli("workflow", "validate", str(ui), "--object-info", str(info), "--json")
    assert as_json.code == 3
    assert as_json.json()["error"]["type"] == "WorkflowInvalid"


def test_validate_against_a_live_sandbox(cli: Any, comfy_sandbox_thread: Any) -> None:
    from comfyfleet.services.demo import TXT2IMG, sample_path

    result = cli(
        "workflow", "validate", str(sample_path(TXT2IMG)), "--target", comfy_sandbox_thread.url
    )
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout


def test_deps_json(cli: Any, shared_dir: Path) -> None:
    api = shared_dir / "fixtures" / "workflows-api" / "lora.api.json"
    result = cli("workflow", "deps", str(api), "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    text = json.dumps(data)
    assert "LoraLoader" in text and "loras" in text and "checkpoints" in text


def test_not_a_workflow_is_a_clear_error(cli: Any, tmp_path: Path, comfy_fixtures: Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": "world"}')
    info = comfy_fixtures / "GET_object_info_full.json"
    result = cli("workflow", "validate", str(bad), "--object-info", str(info))
    assert result.code == 3
    assert "notes.json" in result.stderr
