"""UI → API conversion against conversions made by the real ComfyUI frontend (1.27.10)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.comfy.workflow.convert import ui_to_api
from comfyfleet.models.nodes import NodeCatalog

# Parametrization needs the file names at collection time; same lookup as the shared_dir fixture.
_SHARED = (
    os.environ.get("COMFYFLEET_SHARED_DIR") or Path(__file__).resolve().parents[2].parent / "shared"
)
FIXTURES = Path(_SHARED) / "fixtures"
UI_NAMES = sorted(p.stem for p in (FIXTURES / "workflows-ui").glob("*.json"))
PAIRED = [n for n in UI_NAMES if (FIXTURES / "workflows-api" / f"{n}.api.json").exists()]
UNPAIRED = [n for n in UI_NAMES if n not in PAIRED]
FRONTEND_ONLY = {"PrimitiveNode", "Reroute", "Note", "MarkdownNote"}


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def read(shared_dir: Path, *parts: str) -> Any:
    return json.loads(shared_dir.joinpath("fixtures", *parts).read_text(encoding="utf-8"))


def test_fixture_sets_are_present() -> None:
    assert len(PAIRED) >= 6, PAIRED
    assert {"controlnet_example", "esrgan_example", "flux_schnell", "text_to_video_wan"} <= set(
        UNPAIRED
    )


@pytest.mark.parametrize("name", PAIRED)
def test_conversion_matches_the_frontend_exactly(
    name: str, shared_dir: Path, catalog: NodeCatalog
) -> None:
    ui = read(shared_dir, "workflows-ui", f"{name}.json")
    expected = read(shared_dir, "workflows-api", f"{name}.api.json")
    converted = ui_to_api(ui, catalog)
    assert converted == expected
    # Same key order for nodes and for each node's inputs: compare the serialized text.
    assert json.dumps(converted) == json.dumps(expected)


@pytest.mark.parametrize("name", UNPAIRED)
def test_unpaired_workflows_convert_to_valid_prompts(
    name: str, shared_dir: Path, catalog: NodeCatalog
) -> None:
    ui = read(shared_dir, "workflows-ui", f"{name}.json")
    prompt = ui_to_api(ui, catalog)
    real_nodes = {
        str(n["id"])
        for n in ui["nodes"]
        if n["type"] not in FRONTEND_ONLY and n.get("mode", 0) == 0
    }
    assert set(prompt) == real_nodes
    for node_id, node in prompt.items():
        node_def = catalog[node["class_type"]]
        assert node["class_type"] not in FRONTEND_ONLY
        assert isinstance(node["_meta"]["title"], str) and node["_meta"]["title"]
        for spec in node_def.section("required"):
            assert spec.name in node["inputs"], (node_id, spec.name)
        for name_in, value in node["inputs"].items():
            if not isinstance(value, list):
                continue
            origin, slot = value
            assert origin in prompt, (node_id, name_in)
            origin_type = catalog[prompt[origin]["class_type"]].outputs[slot]
            wanted = node_def.inputs[name_in].type
            assert wanted in (origin_type, "*"), (node_id, name_in, origin_type, wanted)
    assert ui_to_api(ui, catalog) == prompt
