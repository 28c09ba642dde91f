"""graph.validate_prompt answers every captured POST /prompt exactly like ComfyUI 0.3.64."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.graph.custom import split_annotation, stock_validations
from comfyfleet.graph.model_folders import with_model_lists
from comfyfleet.graph.validate import validate_prompt
from comfyfleet.models.nodes import NodeCatalog

# Parametrisation needs the file names at collection time, before fixtures exist; same lookup
# as conftest's `shared_dir`.
_SHARED = (
    os.environ.get("COMFYFLEET_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared"
)
FIXTURES = Path(_SHARED) / "fixtures" / "comfyui"

# Server concerns, not validation: the server itself answers these before validating.
SERVER_ONLY = {
    # no "prompt" key: post_prompt answers no_prompt without calling validate_prompt
    "POST_prompt_invalid_no_prompt_key.json",
    # body is not JSON: aiohttp raises before any handler logic (500 text/plain)
    "POST_prompt_invalid_malformed_json.json",
    # Origin/Host mismatch: the origin middleware answers 403 before the handler
    "POST_prompt_origin_mismatch.json",
}

# Files in the stock server's input folder while the fixtures were captured
# (GET_object_info_LoadImage_after_uploads.json lists them).
INPUT_FILES = {"corrupt.png", "example.png", "fixture_upload (1).png", "fixture_upload.png"}


def _fixture_names() -> list[str]:
    names = [p.name for p in FIXTURES.glob("POST_prompt_*.json")]
    names += [p.name for p in FIXTURES.glob("extra_POST_prompt_*.json")]
    return sorted(names)


def _body(comfy_fixtures: Path, name: str) -> Any:
    return json.loads((comfy_fixtures / name).read_text())["response"]["body"]


@pytest.fixture(scope="module")
def catalogs(comfy_fixtures: Path, object_info_full: dict[str, Any]) -> dict[str, NodeCatalog]:
    """The stock run's catalog, and the second run's: same nodes, its model lists."""
    stock = NodeCatalog(object_info_full)
    second = with_model_lists(
        stock,
        {
            "checkpoints": _body(comfy_fixtures, "extra_GET_models_checkpoints.json"),
            "loras": _body(comfy_fixtures, "extra_GET_models_loras.json"),
        },
    )
    captured = _body(comfy_fixtures, "extra_GET_object_info_CheckpointLoaderSimple.json")
    assert second.raw["CheckpointLoaderSimple"] == captured["CheckpointLoaderSimple"]
    return {"stock": stock, "second": second}


def _shape_tracebacks(node_errors: dict[str, Any]) -> dict[str, Any]:
    """Tracebacks hold machine paths: compare them as non-empty lists of strings only."""
    out = json.loads(json.dumps(node_errors))
    for entry in out.values():
        for err in entry["errors"]:
            tb = err["extra_info"].get("traceback")
            if tb is not None:
                assert isinstance(tb, list) and tb and all(isinstance(t, str) for t in tb)
                err["extra_info"]["traceback"] = "<traceback>"
    return out


def test_every_prompt_fixture_is_covered() -> None:
    names = _fixture_names()
    assert len(names) >= 25
    assert set(names) >= SERVER_ONLY


@pytest.mark.parametrize("name", _fixture_names())
def test_validation_matches_capture(
    name: str, comfy_fixtures: Path, catalogs: dict[str, NodeCatalog]
) -> None:
    if name in SERVER_ONLY:
        pytest.skip("answered by the HTTP server before validation")
    capture = json.loads((comfy_fixtures / name).read_text())
    request, response = capture["request"]["json"], capture["response"]
    catalog = catalogs["second" if name.startswith("extra_") else "stock"]
    hooks = stock_validations(lambda n: split_annotation(n)[0] in INPUT_FILES)

    result = validate_prompt(
        request["prompt"],
        catalog,
        partial_targets=request.get("partial_execution_targets"),
        custom=hooks,
    )

    assert (200 if result.ok else 400) == response["status"]
    body = response["body"]
    assert _shape_tracebacks(result.node_errors) == _shape_tracebacks(body["node_errors"])
    assert list(result.node_errors) == list(body["node_errors"])  # same order
    if result.ok:
        assert result.error is None
        assert result.outputs
    else:
        assert json.loads(json.dumps(result.error_body()["error"])) == body["error"]
        assert result.outputs == []


def test_input_prompt_is_left_untouched(catalogs: dict[str, NodeCatalog]) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": {"__value__": 64}, "height": "64"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    before = json.dumps(prompt)
    result = validate_prompt(prompt, catalogs["stock"])
    assert json.dumps(prompt) == before
    # The queued prompt carries ComfyUI's conversions.
    assert result.prompt["1"]["inputs"]["width"] == 64
    assert result.prompt["1"]["inputs"]["height"] == 64
