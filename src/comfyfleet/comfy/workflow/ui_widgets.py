"""Widgets and input sockets of a node, built from /object_info as the ComfyUI editor builds them.

A node's `widgets_values` in a UI file is positional: it only means something once the widget
list is known. The editor (frontend 1.27) builds that list from the node definition:

* inputs in `input_order` (required, then optional), then inputs the definition gained from
  editor extensions (`upload` buttons, `audioUI` players);
* one widget per widget-typed input, plus non-serialized helpers: a `control_after_generate`
  combo after seed-like INTs and controlled combos, a filter string after controlled combos,
  an `upload` button after media pickers, a `refresh` button after remote combos;
* every input gets a socket: non-widget inputs first, then one socket per widget.

Two flags differ: `in_workflow` (takes a `widgets_values` slot) and `in_prompt` (sent in the API
prompt). A `control_after_generate` combo takes a slot but is never sent; an `audioUI` player
takes no slot but is sent as "".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from comfyfleet.comfy.workflow.convert_js import truthy
from comfyfleet.comfy.workflow.ui_widget import Widget
from comfyfleet.comfy.workflow.ui_widget_kinds import (
    BROWSER_ONLY_WIDGETS,
    WIDGET_TYPES,
    make_widgets,
    widget_constructor_exists,
)
from comfyfleet.models.nodes import NodeDef

__all__ = ["BROWSER_ONLY_WIDGETS", "WIDGET_TYPES", "Widget", "make_widgets"]

SAVE_NODE_TYPES = frozenset(
    {
        "SaveImage",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)
_AUDIO_UI_NODES = ("LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus")


# --------------------------------------------------------------------------- specs


def frontend_input_specs(node_def: NodeDef) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The node's inputs as the editor sees them: (in widget order, in definition order).

    Definitions gain editor-only inputs (`upload`, `audioUI`, 3D previews) first; optional
    inputs with `defaultInput` become `forceInput`, as the editor migrates them.
    """
    raw_input = node_def.raw.get("input") or {}
    required: dict[str, Any] = dict(raw_input.get("required") or {})
    optional: dict[str, Any] = {}
    for name, spec in (raw_input.get("optional") or {}).items():
        if _options(spec).get("defaultInput"):
            spec = [spec[0], {**spec[1], "forceInput": True}, *spec[2:]]
        optional[name] = spec
    _add_editor_inputs(node_def.name, required)
    specs: dict[str, dict[str, Any]] = {}
    for section, entries in (("required", required), ("optional", optional)):
        for name, spec in entries.items():
            specs[name] = _v2_spec(name, spec, section == "optional")
    order = node_def.raw.get("input_order") or {}
    ordered: list[dict[str, Any]] = []
    for name in order.get("required") or []:
        if name in specs and not specs[name]["isOptional"]:
            ordered.append(specs[name])
    for name in order.get("optional") or []:
        if name in specs and specs[name]["isOptional"]:
            ordered.append(specs[name])
    if not order:
        ordered = list(specs.values())
    seen = {spec["name"] for spec in ordered}
    ordered += [spec for spec in specs.values() if spec["name"] not in seen]
    return ordered, list(specs.values())


def _add_editor_inputs(class_type: str, required: dict[str, Any]) -> None:
    if class_type in ("SaveGLB", "Preview3D"):
        required["image"] = ["PREVIEW_3D"]
    elif class_type == "Preview3DAnimation":
        required["image"] = ["PREVIEW_3D_ANIMATION"]
    if class_type in _AUDIO_UI_NODES:
        required["audioUI"] = ["AUDIO_UI", {}]
    if _options(required.get("audio")).get("audio_upload") is True:
        required["upload"] = ["AUDIOUPLOAD", {}]
    for name, spec in required.items():
        if _is_media_combo(spec):
            required["upload"] = ["IMAGEUPLOAD", {**spec[1], "imageInputName": name}]
            break


def _options(spec: Any) -> Mapping[str, Any]:
    """The options mapping of a V1 `[TYPE, {opts}]` spec (empty when there is none)."""
    if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], Mapping):
        return spec[1]
    return {}


def _is_media_combo(spec: Any) -> bool:
    if not isinstance(spec, list | tuple) or len(spec) < 2 or not isinstance(spec[1], Mapping):
        return False
    opts = spec[1]
    if not any(
        opts.get(k) is True for k in ("image_upload", "video_upload", "animated_image_upload")
    ):
        return False
    return isinstance(spec[0], list | tuple) or spec[0] == "COMBO"


def _v2_spec(name: str, spec: Any, optional: bool) -> dict[str, Any]:
    """V1 `[TYPE, {opts}]` to the editor's flat V2 spec `{name, type, isOptional, …opts}`."""
    if isinstance(spec, str):
        spec = [spec]
    head = spec[0] if isinstance(spec, list | tuple) and spec else "*"
    opts = spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 else {}
    opts = opts if isinstance(opts, Mapping) else {}
    base: dict[str, Any] = {"name": name, "isOptional": optional, **opts}
    if isinstance(head, list | tuple):
        return {"type": "COMBO", **base, "options": list(head)}
    if head == "COMBO":
        return {"type": "COMBO", **base, "options": list(opts.get("options") or [])}
    if isinstance(head, str):
        return {"type": head, **base}
    return {"type": "UNKNOWN", **base}


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class SocketDef:
    """An input socket of a node type; `widget` names the widget it belongs to."""

    name: str
    type: Any
    widget: str | None = None
    config: Mapping[str, Any] | None = None  # the widget input's spec (what primitives copy)


@dataclass
class NodeShape:
    """Sockets and widgets a new node of one type starts with."""

    sockets: list[SocketDef]
    widgets: list[Widget]
    definition_order: list[dict[str, Any]]
    outputs: list[tuple[str, Any]]


def build_node_shape(node_def: NodeDef) -> NodeShape:
    """Sockets, widgets and outputs as the editor creates them for a new node of this type."""
    ordered, definition_order = frontend_input_specs(node_def)
    sockets: list[SocketDef] = []
    widgets: list[Widget] = []
    for spec in ordered:
        if widget_constructor_exists(spec) and not spec.get("forceInput"):
            continue
        sockets.append(SocketDef(spec["name"], spec.get("type")))
    for spec in ordered:
        if not widget_constructor_exists(spec) or spec.get("forceInput"):
            continue
        created = make_widgets(spec)
        widgets += created
        if spec.get("type") == "IMAGEUPLOAD" or spec.get("widgetType") == "IMAGEUPLOAD":
            target = next((w for w in widgets if w.name == spec.get("imageInputName")), None)
            if target is not None:
                target.make_upload_picker(spec)
        sockets.append(SocketDef(spec["name"], spec.get("type"), spec["name"], spec))
    _add_created_hooks(node_def.name, widgets)
    outputs = list(zip(node_def.output_names, node_def.outputs, strict=False))
    return NodeShape(sockets, widgets, definition_order, outputs)


def _add_created_hooks(class_type: str, widgets: list[Widget]) -> None:
    if class_type in SAVE_NODE_TYPES:
        for widget in widgets:
            if widget.name == "filename_prefix":
                widget.serializer = "filename_prefix"
    if class_type == "PreviewAny":
        preview = Widget("preview", "customtext", {}, in_workflow=False, storage="text")
        preview.value = ""
        widgets.append(preview)


def migrate_widgets_values(
    definition_order: Sequence[Mapping[str, Any]], widgets: Sequence[Widget], values: Any
) -> Any:
    """Drop the dummy values files before frontend 1.16 kept for `forceInput` inputs."""
    if not isinstance(values, list):
        return values
    names = {w.name for w in widgets}
    originals = [s for s in definition_order if s["name"] in names or s.get("forceInput")]
    count = sum(
        2 if truthy(s.get("control_after_generate")) or s["name"] in ("seed", "noise_seed") else 1
        for s in originals
    )
    if count != len(values):
        return values
    kept = []
    for index, value in enumerate(values):
        spec = originals[index] if index < len(originals) else None
        if spec is not None and spec.get("forceInput"):
            continue
        kept.append(value)
    return kept


def apply_widgets_values(widgets: Sequence[Widget], values: Any) -> None:
    """Assign saved values positionally to the widgets that take a slot."""
    if not isinstance(values, list):
        return
    slots = [w for w in widgets if w.in_workflow]
    for widget, value in zip(slots, values, strict=False):
        widget.value = value
