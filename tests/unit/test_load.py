"""Loading workflows: format detection, wrapped prompts, PNG metadata, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from comfyfleet.comfy.workflow.load import load_workflow
from comfyfleet.errors import UsageError, WorkflowFormatError

API = {
    "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["3", 2]}},
    "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
}


@pytest.fixture
def ui_workflow(shared_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (shared_dir / "fixtures" / "workflows-ui" / "default.json").read_text()
    )
    return data


def png_bytes(chunks: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_ui_and_api_files_are_told_apart(tmp_path: Path, ui_workflow: dict[str, Any]) -> None:
    (tmp_path / "ui.json").write_text(json.dumps(ui_workflow))
    (tmp_path / "api.json").write_text(json.dumps(API))
    ui = load_workflow(tmp_path / "ui.json")
    api = load_workflow(str(tmp_path / "api.json"))
    assert (ui.format, ui.api, ui.ui) == ("ui", None, ui_workflow)
    assert (api.format, api.api, api.ui) == ("api", API, None)
    assert ui.source == str(tmp_path / "ui.json")


def test_sha256_is_of_canonical_json(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(API, indent=2))
    reordered = {k: API[k] for k in reversed(list(API))}
    (tmp_path / "b.json").write_text(json.dumps(reordered, separators=(",", ":")))
    first, second = load_workflow(tmp_path / "a.json"), load_workflow(tmp_path / "b.json")
    assert first.sha256 == second.sha256
    changed = {**API, "1": {**API["1"], "inputs": {"width": 65, "height": 64, "batch_size": 1}}}
    assert load_workflow(json.dumps(changed)).sha256 != first.sha256


def test_post_prompt_body_and_history_entries_unwrap(ui_workflow: dict[str, Any]) -> None:
    body = {
        "client_id": "c",
        "prompt": API,
        "extra_data": {"extra_pnginfo": {"workflow": ui_workflow}},
    }
    loaded = load_workflow(json.dumps(body))
    assert (loaded.format, loaded.api, loaded.ui) == ("api", API, ui_workflow)
    assert load_workflow(body, prefer="ui").format == "ui"
    entry = {"prompt": [3, "pid", API, {"client_id": "c"}, ["2"]], "outputs": {}, "status": {}}
    assert load_workflow({"pid": entry}).api == API
    assert load_workflow(entry).ui is None


def test_captured_history_answer_loads(comfy_fixtures: Path) -> None:
    envelope = json.loads((comfy_fixtures / "GET_history_prompt_id_success.json").read_text())
    loaded = load_workflow(json.dumps(envelope["response"]["body"]))
    assert loaded.format == "api"
    assert loaded.api is not None and loaded.api["2"]["class_type"] == "ImageInvert"


def test_png_carries_both_forms(tmp_path: Path, ui_workflow: dict[str, Any]) -> None:
    path = tmp_path / "ComfyUI_00001_.png"
    path.write_bytes(png_bytes({"prompt": json.dumps(API), "workflow": json.dumps(ui_workflow)}))
    loaded = load_workflow(path)
    assert (loaded.format, loaded.api, loaded.ui) == ("api", API, ui_workflow)
    assert load_workflow(path, prefer="ui").format == "ui"
    only_ui = load_workflow(png_bytes({"workflow": json.dumps(ui_workflow)}))
    assert (only_ui.format, only_ui.api) == ("ui", None)


def test_png_without_workflow_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes({"parameters": "a photo"}))
    with pytest.raises(WorkflowFormatError, match=r"photo\.png: this PNG carries no ComfyUI"):
        load_workflow(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"nodes": [', "not JSON (Expecting value at line 1, column 12)"),
        ("[1, 2]", "a workflow is a JSON object, not list"),
        ('{"a": 1}', "neither a UI workflow"),
        ('{"1": {"class_type": "X", "inputs": {"a": ["9", 0]}}}', "links to missing node 9"),
        ('{"1": {"class_type": "", "inputs": {}}}', "node 1 has no class_type"),
    ],
)
def test_bad_files_are_named_with_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(WorkflowFormatError) as caught:
        load_workflow(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_ui_with_broken_links_and_missing_files(
    tmp_path: Path, ui_workflow: dict[str, Any]
) -> None:
    ui_workflow["links"].append([99, 4, 0, 40, 0, "MODEL"])
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(ui_workflow))
    with pytest.raises(WorkflowFormatError, match="links to missing node 40"):
        load_workflow(path)
    with pytest.raises(UsageError, match="no such file"):
        load_workflow(tmp_path / "absent.json")


def test_version_1_graph_with_object_links_loads() -> None:
    graph = {
        "version": 1,
        "nodes": [
            {"id": 1, "type": "EmptyLatentImage", "outputs": [{"name": "LATENT", "links": [5]}]},
            {"id": 2, "type": "VAEDecode", "inputs": [{"name": "samples", "link": 5}]},
        ],
        "links": [
            {
                "id": 5,
                "origin_id": 1,
                "origin_slot": 0,
                "target_id": 2,
                "target_slot": 0,
                "type": "LATENT",
            }
        ],
    }
    assert load_workflow(graph).format == "ui"
    graph["links"][0]["origin_id"] = 7  # type: ignore[index]
    with pytest.raises(WorkflowFormatError, match="missing node 7"):
        load_workflow(graph)
