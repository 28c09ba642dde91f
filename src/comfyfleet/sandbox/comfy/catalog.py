"""The live node catalog: the captured /object_info with options rescanned on every request.

As in ComfyUI, combo options that list files are computed when asked: model inputs from the
model folders, LoadImage and friends from input/. Validation runs against this live catalog,
so a model dropped into models/ or an uploaded image is accepted at once. The built-in
classes are the capture's without its one custom node (SaveImageWebsocket, which the
`websocket_image_save.py` pack of custom_nodes/ brings); loaded packs add theirs after them.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from comfyfleet.graph.custom import CustomValidation, split_annotation, stock_validations
from comfyfleet.graph.model_folders import FOLDER_DIRS, with_model_lists
from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.sandbox.comfy.layout import Layout

_DATA = "comfyfleet.sandbox.comfy"

#: Load* inputs that list input/ files: (class, input) -> MIME family (None = every file).
_INPUT_LISTS: dict[tuple[str, str], str | None] = {
    ("LoadImage", "image"): "image",
    ("LoadImageMask", "image"): None,
    ("LoadAudio", "audio"): "audio",
    ("LoadVideo", "file"): "video",
}


@functools.cache
def captured_object_info() -> dict[str, Any]:
    """The packaged copy of the captured stock /object_info (ComfyUI 0.3.64, 496 nodes)."""
    raw = (resources.files(_DATA) / "data" / "object_info.json.gz").read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(raw))
    return data


@functools.cache
def probe_node_info() -> dict[str, Any]:
    """The ProgressProbe test node of the second fixture run (knob `probe_node`)."""
    data: dict[str, Any] = json.loads(
        (resources.files(_DATA) / "data" / "progress_probe.json").read_text()
    )
    return data


def _is_builtin(entry: Any) -> bool:
    return not str(entry.get("python_module", "")).startswith("custom_nodes.")


@functools.cache
def builtin_names() -> frozenset[str]:
    """The classes ComfyUI has before loading custom nodes (packs cannot replace them)."""
    return frozenset(k for k, v in captured_object_info().items() if _is_builtin(v))


@functools.cache
def _base_catalog(with_probe: bool) -> NodeCatalog:
    raw = {k: v for k, v in captured_object_info().items() if _is_builtin(v)}
    if with_probe:
        raw.update(probe_node_info())
    return NodeCatalog(raw)


def _with_choices(spec: Any, choices: list[str]) -> Any:
    if isinstance(spec, list) and spec and isinstance(spec[0], list):
        return [choices, *spec[1:]]
    if isinstance(spec, list) and spec and spec[0] == "COMBO" and len(spec) > 1:
        return [spec[0], {**spec[1], "options": choices}, *spec[2:]]
    return spec


def _replace(raw: dict[str, Any], class_type: str, input_name: str, choices: list[str]) -> None:
    entry = raw.get(class_type)
    if entry is None:
        return
    required = dict(entry["input"]["required"])
    required[input_name] = _with_choices(required[input_name], choices)
    raw[class_type] = {**entry, "input": {**entry["input"], "required": required}}


def live_catalog(
    layout: Layout, *, with_probe: bool = False, packs: Mapping[str, Any] | None = None
) -> NodeCatalog:
    """The catalog as the server would answer /object_info right now (`packs`: the entries
    of the loaded custom node classes)."""
    lists = {folder: layout.filename_list(folder) for folder in FOLDER_DIRS}
    catalog = with_model_lists(_base_catalog(with_probe), lists)
    raw = dict(catalog.raw)
    for (class_type, input_name), family in _INPUT_LISTS.items():
        _replace(raw, class_type, input_name, layout.input_files(family))
    latents = [n for n in layout.input_files(None) if n.endswith(".latent")]
    _replace(raw, "LoadLatent", "latent", latents)
    models_3d = layout.input / "3d"
    if models_3d.is_dir():
        names = sorted(
            f"3d/{n}"
            for n in os.listdir(models_3d)
            if n.lower().endswith((".gltf", ".glb", ".obj", ".fbx", ".stl"))
        )
        _replace(raw, "Load3D", "model_file", names)
        _replace(raw, "Load3DAnimation", "model_file", names)
    raw.update(packs or {})
    return NodeCatalog(raw)


def custom_validations(
    layout: Layout, packs: Mapping[str, CustomValidation] | None = None
) -> dict[str, CustomValidation]:
    """The stock VALIDATE_INPUTS hooks, with file checks against this root, and the packs'."""

    def exists(name: str) -> bool:
        plain, folder = split_annotation(name)
        base = layout.root / folder if folder else layout.input
        return os.path.exists(base / plain)

    return {**stock_validations(exists), **(packs or {})}
