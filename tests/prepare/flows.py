"""Workflows, packs and model files for `prepare` and `env` tests.

A workflow needs one custom class (`PrepNote`, an output node of the pack `prep_pack`, a
local git repository that ComfyUI-Manager's map served by the test's catalog stand-in
lists) and one checkpoint served by the test's model server, named with its URL and sha256
in the UI workflow's `models` metadata, as the ComfyUI frontend saves them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import textwrap
from pathlib import Path
from typing import Any

from tests.models.modelserver import ModelServer
from tests.nodes.packs import make_pack, node_source

SAMPLE = Path(__file__).resolve().parents[2] / "src/comfyfleet/samples/txt2img_sd15.json"
CHECKPOINT = "prep_model.safetensors"
PACK = "prep_pack"
PACK_CLASS = "PrepNote"

NOTE_NODE = textwrap.dedent(
    """
    class PrepNote:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "tests"

        def run(self):
            import onnx
            return {"ui": {"text": ["ready with onnx " + onnx.__version__]}}

    NODE_CLASS_MAPPINGS = {"PrepNote": PrepNote}
    """
)


def safetensors_blob(seed: int, size: int = 150_000) -> bytes:
    """A file ComfyUI's loaders accept: a valid safetensors header, then padding."""
    header = json.dumps({"__metadata__": {"seed": str(seed)}}).encode()
    body = bytes((seed * 31 + i * 13) % 251 for i in range(size))
    return struct.pack("<Q", len(header)) + header + body


def serve_model(server: ModelServer, name: str, seed: int) -> tuple[str, str]:
    """Serve a checkpoint; its URL and sha256."""
    server.blobs[name] = safetensors_blob(seed)
    return f"{server.url}/files/{name}", hashlib.sha256(server.blobs[name]).hexdigest()


def list_pack_in_catalog(server: ModelServer, url: str, classes: list[str]) -> None:
    """Add a pack to the extension-node-map the stand-in serves (its class -> pack map)."""
    data = json.loads(server.files["extension-node-map.json"])
    data[url] = [classes, {"title_aux": f"{url.rsplit('/', 1)[-1]} (tests)"}]
    server.files["extension-node-map.json"] = json.dumps(data).encode()


def make_prep_pack(base: Path) -> str:
    """The pack providing PrepNote (its requirements: onnx, from the host's wheelhouse)."""
    return make_pack(base, PACK, {"__init__.py": NOTE_NODE, "requirements.txt": "onnx>=1.17\n"})


def make_simple_pack(base: Path, name: str, *classes: str, requirements: str = "") -> str:
    files = {"__init__.py": node_source(*classes)}
    if requirements:
        files["requirements.txt"] = requirements
    return make_pack(base, name, files)


def workflow(
    base: Path,
    name: str,
    *,
    model_url: str,
    model_sha: str | None,
    extra_classes: tuple[str, ...] = (),
    checkpoint: str = CHECKPOINT,
) -> Path:
    """The stock text-to-image UI workflow, loading `checkpoint` (with its URL), plus a
    PrepNote output node and one node of each of `extra_classes`."""
    ui: dict[str, Any] = copy.deepcopy(json.loads(SAMPLE.read_text()))
    loader = next(n for n in ui["nodes"] if n["type"] == "CheckpointLoaderSimple")
    loader["widgets_values"] = [checkpoint]
    meta = {"name": checkpoint, "url": model_url, "directory": "checkpoints"}
    if model_sha:
        meta.update(hash=model_sha, hash_type="sha256")
    loader["properties"]["models"] = [meta]
    next_id = max(n["id"] for n in ui["nodes"]) + 1
    for offset, cls in enumerate((PACK_CLASS, *extra_classes)):
        ui["nodes"].append(
            {
                "id": next_id + offset,
                "type": cls,
                "pos": [100 * offset, 900],
                "size": [200, 60],
                "flags": {},
                "order": 7 + offset,
                "mode": 0,
                "properties": {"Node name for S&R": cls},
                "widgets_values": [],
            }
        )
    ui["last_node_id"] = next_id + len(extra_classes)
    path = base / name
    path.write_text(json.dumps(ui))
    return path
