"""PrimitiveNode: an editor-only node whose value is pushed into the widgets it feeds.

On load the primitive copies the widget definition of the input its first link reaches, takes
its saved `widgets_values`, and (for numbers) clamps and rounds the value to the range every
target accepts. Before queueing, the value is written into each target widget through that
widget's change callback (which rounds numbers to the target's step). The primitive itself is
never sent; its targets simply carry the value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from comfyfleet.comfy.workflow.convert_js import UNDEFINED, is_nullish, number_or, truthy
from comfyfleet.comfy.workflow.convert_nodes import LiveInput, LiveNode
from comfyfleet.comfy.workflow.ui_widget_kinds import CORE_WIDGET_TYPES
from comfyfleet.comfy.workflow.ui_widgets import Widget, make_widgets

REPLACE_PROPERTY = "Run widget replace on values"
_IGNORED_IN_MERGE = frozenset(
    {
        "default",
        "forceInput",
        "defaultInput",
        "control_after_generate",
        "multiline",
        "tooltip",
        "dynamicPrompts",
    }
)


def _first_target(node: LiveNode) -> tuple[LiveNode, LiveInput] | None:
    links = node.outputs[0].links if node.outputs else []
    if not links:
        return None
    link = node.graph.links.get(links[0])
    target = node.graph.node(link.target_id) if link else None
    if link is None or target is None or not target.inputs:
        return None
    if not 0 <= link.target_slot < len(target.inputs):
        return None
    return target, target.inputs[link.target_slot]


def _target_config(slot: LiveInput) -> dict[str, Any] | None:
    if slot.widget is None:
        if str(slot.type) not in CORE_WIDGET_TYPES:
            return None
        return {"type": slot.type}
    return dict(slot.config) if slot.config is not None else None


def _create_widgets(node: LiveNode, config: Mapping[str, Any], target: LiveNode, name: str) -> None:
    kind = str(config.get("type"))
    if kind in CORE_WIDGET_TYPES:
        spec = {**config}
        spec.setdefault("name", "value")
        widgets = make_widgets({**spec, "type": kind, "widgetType": None}, spec["name"])
    else:
        widgets = [Widget("value", kind.lower(), dict(config), _value=None)]
    main = widgets[0]
    theirs = target.widget(name)
    if theirs is not None:
        main.value = theirs.value
    saved = node.widgets_values if isinstance(node.widgets_values, list) else []
    if not truthy(config.get("control_after_generate")) and main.kind in ("number", "combo"):
        control = saved[1] if len(saved) > 1 and truthy(saved[1]) else "fixed"
        widgets.append(
            Widget("control_after_generate", "combo", {}, in_prompt=False, _value=control)
        )
        if main.kind == "combo":
            widgets.append(Widget("control_filter_list", "text", {}, in_prompt=False, _value=""))
            if len(saved) > 2 and truthy(saved[2]) and len(widgets) == 3:
                widgets[2].value = saved[2]
    node.widgets = widgets


def setup_primitive(node: LiveNode) -> None:
    """Create the primitive's widgets from its first target and restore its saved values."""
    if node.widgets:
        return
    found = _first_target(node)
    if found is None:
        return
    target, slot = found
    config = _target_config(slot)
    if config is None:
        return
    node.outputs[0].type = config.get("type")
    widget_name = slot.widget if slot.widget is not None else slot.name
    _create_widgets(node, config, target, widget_name)
    saved = node.widgets_values if isinstance(node.widgets_values, list) else []
    for widget, value in zip(node.widgets, saved, strict=False):
        widget.value = value
    _merge_number_configs(node, config, target, widget_name)


def _merge_number_configs(
    node: LiveNode, first: Mapping[str, Any], target: LiveNode, widget_name: str
) -> None:
    """Numbers are clamped and rounded to the merged range of the targets they can share."""
    if first.get("type") not in ("INT", "FLOAT"):
        return
    merged: Mapping[str, Any] | None = None
    for link_id in node.outputs[0].links:
        link = node.graph.links.get(link_id)
        their_node = node.graph.node(link.target_id) if link else None
        if link is None or their_node is None:
            continue
        if not 0 <= link.target_slot < len(their_node.inputs):
            continue
        their_input = their_node.inputs[link.target_slot]
        other = _target_config(their_input) if their_input.widget is not None else None
        if other is None:
            continue
        combined = merge_input_spec(merged or first, other)
        if combined is None:
            continue
        merged = combined
        values = [w.value for w in node.widgets]
        _create_widgets(node, combined, target, widget_name)
        for widget, value in zip(node.widgets, values, strict=False):
            widget.value = value
        main = node.widgets[0]
        value = main.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = _numeric_range(combined)
            if value < low:
                main.value = low
            if main.value > high:
                main.value = high
        main.on_change(main.value)


def _numeric_range(spec: Mapping[str, Any]) -> tuple[float, float]:
    return number_or(spec.get("min"), -math.inf), number_or(spec.get("max"), math.inf)


def _gcd(a: float, b: float) -> float:
    while b != 0:
        a, b = b, math.fmod(a, b)
    return a


def merge_input_spec(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any] | None:
    """Intersect two widget specs of one type; None when they cannot share a value."""
    if a.get("type") != b.get("type"):
        return None
    first, second = dict(a), dict(b)
    if first.get("type") in ("INT", "FLOAT"):
        (low1, high1), (low2, high2) = _numeric_range(first), _numeric_range(second)
        if low1 > high2 or high1 < low2:
            return None
        step1 = number_or(first.get("step"), 1)
        step2 = number_or(second.get("step"), 1)
        divisor = _gcd(step1, step2)
        shared = {
            "min": max(low1, low2),
            "max": min(high1, high2),
            "step": abs(step1 * step2) / divisor if divisor else math.nan,
        }
        first.update(shared)
        second.update(shared)
    elif first.get("type") == "COMBO":
        options2 = list(second.get("options") or [])
        common = [o for o in dict.fromkeys(first.get("options") or []) if o in options2]
        if not common:
            return None
        first["options"] = common
        second["options"] = common
    keys = [k for k in dict.fromkeys([*first, *second]) if k not in _IGNORED_IN_MERGE]
    for key in keys:
        one, two = first.get(key, UNDEFINED), second.get(key, UNDEFINED)
        if not (_same(one, two) or (is_nullish(one) and is_nullish(two))):
            return None
    return {**first, **second}


def _same(one: Any, two: Any) -> bool:
    """`===`: primitives by value, objects only when they are the same object."""
    if isinstance(one, dict | list) or isinstance(two, dict | list):
        return one is two
    if isinstance(one, bool) != isinstance(two, bool):
        return False
    if isinstance(one, int | float) and isinstance(two, int | float):
        return one == two
    return type(one) is type(two) and bool(one == two)


def apply_primitive(node: LiveNode, replace: Callable[[str], str]) -> None:
    """Write the primitive's value into every widget it is linked to."""
    links = node.outputs[0].links if node.outputs else []
    if not links:
        return
    value: Any = node.widgets[0].value if node.widgets else UNDEFINED
    if truthy(value) and node.properties.get(REPLACE_PROPERTY) and isinstance(value, str):
        value = replace(value)
    for link_id in links:
        link = node.graph.links.get(link_id)
        target = node.graph.node(link.target_id) if link else None
        if link is None or target is None or not 0 <= link.target_slot < len(target.inputs):
            continue
        slot = target.inputs[link.target_slot]
        widget = target.widget_for_input(slot)
        if widget is not None:
            widget.on_change(value)
