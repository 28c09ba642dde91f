"""comfy.workflow.validate: offline validation and ComfyUI errors turned into WorkflowInvalid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.comfy.workflow.deps import deps_of_prompt
from comfyfleet.comfy.workflow.validate import (
    accepted_warnings,
    ensure_valid,
    invalid_from_wire,
    node_errors_from_wire,
    validate_offline,
)
from comfyfleet.errors import PromptRejected, WorkflowInvalid
from comfyfleet.models.nodes import NodeCatalog


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def _api(shared_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (shared_dir / "fixtures" / "workflows-api" / f"{name}.api.json").read_text()
    )
    return data


API_NAMES = [
    "default",
    "hidream_e1_1",
    "hunyuan_video_text_to_video",
    "image_qwen_image_instantx_controlnet",
    "lora",
    "sdxl_simple_example",
]


@pytest.mark.parametrize("name", API_NAMES)
def test_frontend_conversions_validate_once_their_files_exist(
    shared_dir: Path, catalog: NodeCatalog, name: str
) -> None:
    prompt = _api(shared_dir, name)
    deps = deps_of_prompt(prompt, catalog)
    files = [i.name for i in deps.inputs]
    result = validate_offline(
        prompt, catalog, model_lists=deps.models_by_folder(), input_files=files
    )
    assert result.ok and result.node_errors == {}, result.node_errors
    # The same prompt fails on the capture server, which had no models: only model errors.
    bare = validate_offline(prompt, catalog)
    kinds = {e["type"] for ne in bare.node_errors.values() for e in ne["errors"]}
    assert kinds <= {"value_not_in_list"}


def test_input_files_are_checked_only_when_given(shared_dir: Path, catalog: NodeCatalog) -> None:
    prompt = _api(shared_dir, "hidream_e1_1")
    lists = deps_of_prompt(prompt, catalog).models_by_folder()
    assert validate_offline(prompt, catalog, model_lists=lists).ok
    result = validate_offline(prompt, catalog, model_lists=lists, input_files=["other.png"])
    (err,) = result.node_errors["13"]["errors"]
    assert err["details"] == "image - Invalid image file: input.webp"


def test_custom_upload_nodes_follow_input_files() -> None:
    toy = NodeCatalog(
        {
            "MyLoad": {
                "input": {"required": {"pic": [["shipped.png"], {"image_upload": True}]}},
                "output": ["IMAGE"],
            },
            "Out": {"input": {"required": {"image": ["IMAGE"]}}, "output": [], "output_node": True},
        }
    )
    prompt = {
        "1": {"class_type": "MyLoad", "inputs": {"pic": "mine.png"}},
        "2": {"class_type": "Out", "inputs": {"image": ["1", 0]}},
    }
    assert validate_offline(prompt, toy).ok
    assert validate_offline(prompt, toy, input_files=["a.png", "mine.png"]).ok
    result = validate_offline(prompt, toy, input_files=["a.png"])
    (err,) = result.node_errors["1"]["errors"]
    assert err["details"] == "pic: 'mine.png' not in ['a.png']"


def test_ensure_valid_explains_failures(shared_dir: Path, catalog: NodeCatalog) -> None:
    prompt = _api(shared_dir, "lora")
    many = [f"ckpt_{i:02}.safetensors" for i in range(25)]
    with pytest.raises(WorkflowInvalid) as caught:
        ensure_valid(prompt, catalog, model_lists={"checkpoints": many, "loras": []})
    exc = caught.value
    assert exc.exit_code == 3 and exc.error_type == "prompt_outputs_failed_validation"
    by_id = {ne.node_id: ne for ne in exc.node_errors}
    ckpt = by_id["4"].errors[0]
    assert ckpt.input_name == "ckpt_name"
    assert list(ckpt.allowed or ()) == many  # the server left the long list out; the catalog has it
    assert ckpt.extra_info["input_config"] is None
    assert by_id["4"].title == "Load Checkpoint"
    text = str(exc)
    assert "node 4 (CheckpointLoaderSimple) 'Load Checkpoint'" in text
    assert "input 'lora_name'" in text
    assert "checkpoints/dreamshaper_8.safetensors" in text  # in the hint


def test_ensure_valid_returns_outputs_and_is_strict_on_request(catalog: NodeCatalog) -> None:
    prompt = {
        "1": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {}},
    }
    assert ensure_valid(prompt, catalog) == ["2"]
    with pytest.raises(WorkflowInvalid) as caught:
        ensure_valid(prompt, catalog, strict=True)
    assert caught.value.error_type == "partially_invalid"
    assert "connect or --set the missing inputs (3.images)" in str(caught.value)


def test_wire_errors_become_prompt_rejected(comfy_fixtures: Path, catalog: NodeCatalog) -> None:
    for path in sorted(comfy_fixtures.glob("*POST_prompt_*.json")):
        response = json.loads(path.read_text())["response"]
        if response["status"] != 400:
            continue
        body = response["body"]
        exc = invalid_from_wire(body, rejected=True, catalog=catalog)
        assert isinstance(exc, PromptRejected) and exc.exit_code == 3
        assert exc.error_type == body["error"]["type"]
        assert [ne.node_id for ne in exc.node_errors] == list(body["node_errors"])
        assert exc.hint or exc.error_type == "no_prompt", path.name


def test_unknown_node_hint(catalog: NodeCatalog) -> None:
    body = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node Foo does not exist.",
            "details": "Node ID '#3'",
            "extra_info": {},
        },
        "node_errors": {},
    }
    exc = invalid_from_wire(body, rejected=True)
    assert "Node ID '#3'" in str(exc) and "custom node" in (exc.hint or "")


def test_accepted_warnings_name_what_is_skipped(comfy_fixtures: Path) -> None:
    name = "POST_prompt_accepted_partially_invalid_one_output_valid_one_invalid.json"
    body = json.loads((comfy_fixtures / name).read_text())["response"]["body"]
    errors = node_errors_from_wire(body["node_errors"], titles={"3": "My image"})
    (line,) = accepted_warnings(errors)
    assert line == (
        "node 3 (LoadImage) 'My image' is invalid: input 'image': Custom validation failed "
        "for node: image - Invalid image file: does_not_exist.png (outputs not run: 4)"
    )
