"""One widget of a node and how its value behaves.

Most widgets keep what they are given. A textarea (multiline text, markdown) turns whatever it
is given into a string; a 3D preview or audio player has no value of its own (always "");
a media picker with an upload button turns file names outside the input folder into annotated
paths (`name [output]`). When a value arrives through the widget's change callback (a
PrimitiveNode pushing its value), numbers are rounded to the widget's step first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.comfy.workflow.convert_js import (
    UNDEFINED,
    js_math_round,
    js_to_fixed_number,
    number_or,
    to_js_string,
    truthy,
)


@dataclass
class Widget:
    """One widget of a live node. `value` follows the widget's own storage rules."""

    name: str
    kind: str  # number, slider, knob, combo, text, customtext, toggle, button, …
    spec: dict[str, Any] = field(default_factory=dict)
    in_prompt: bool = True
    in_workflow: bool = True
    storage: str = "plain"  # plain | text (a textarea: always a string) | empty | upload
    serializer: str | None = None  # dynamic_prompts | filename_prefix
    linked: list[Widget] = field(default_factory=list)
    _value: Any = UNDEFINED
    upload_folder: str = "input"
    upload_batch: bool = False
    _upload_initial: str = ""
    _upload_changed: bool = False

    @property
    def value(self) -> Any:
        if self.storage == "empty":
            return ""
        if self.storage == "upload":
            return self._upload_value()
        return self._value

    @value.setter
    def value(self, new: Any) -> None:
        if self.storage == "text":
            self._value = "" if new is None else to_js_string(new)
        elif self.storage == "upload":
            self._upload_changed = True
            self._value = new
        else:
            self._value = new

    def _upload_value(self) -> Any:
        folder = self.upload_folder
        if not self._upload_changed:
            return _annotated(self._upload_initial, folder) if self._upload_initial else ""
        raw = self._value
        if not truthy(raw):
            return self._upload_initial
        if isinstance(raw, list):
            if self.upload_batch:
                return [_annotated(v, folder) for v in raw]
            return _annotated(raw[0] if raw else UNDEFINED, folder)
        return _annotated(raw, folder)

    def make_upload_picker(self, options: Mapping[str, Any]) -> None:
        """A media combo gains a path transform when an upload button is attached to it."""
        self.upload_folder = to_js_string(options.get("image_folder") or "input")
        self.upload_batch = truthy(options.get("allow_batch"))
        self._upload_initial = to_js_string(self._value)
        self._upload_changed = False
        self.storage = "upload"

    def on_change(self, new: Any) -> None:
        """Assign as the widget's change callback does (numbers are rounded to their step)."""
        self.value = new
        if self.kind in ("number", "slider", "knob"):
            if self.spec.get("type") == "INT":
                self.value = _round_int(self.value, self.spec)
            elif self.spec.get("type") == "FLOAT":
                self.value = _round_float(self.value, self.spec)

    def copy_for(self, name: str) -> Widget:
        """A promoted copy (subgraph nodes show inner widgets under the subgraph input name)."""
        clone = copy.copy(self)
        clone.name = name
        clone.linked = []
        return clone


def _annotated(item: Any, folder: str) -> str:
    """The `name [folder]` path the server resolves, for pickers outside `input`."""

    def annotation(text: str) -> str:
        low = text.lower()
        has = any(f"[{f}]" in low for f in ("input", "output", "temp"))
        return "" if has or folder == "input" else f" [{folder}]"

    if isinstance(item, Mapping):
        name = to_js_string(item.get("filename") or "")
        sub = item.get("subfolder")
        path = f"{to_js_string(sub)}/{name}" if truthy(sub) else name
        kind = item.get("type")
        return path + (annotation(to_js_string(kind)) if truthy(kind) else "")
    text = to_js_string(item)
    return text + annotation(text)


def _numeric_range(spec: Mapping[str, Any]) -> tuple[float, float]:
    return number_or(spec.get("min"), 0), number_or(spec.get("max"), 2048)


def _round_int(value: Any, spec: Mapping[str, Any]) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    step = number_or(spec.get("step"), 1) or 1
    if step == 1:
        return _int_if_whole(js_math_round(value))
    low = _numeric_range(spec)[0]
    offset = math.fmod(low, step) if math.isfinite(low) else math.nan
    return _int_if_whole(js_math_round((value - offset) / step) * step + offset)


def _float_precision(spec: Mapping[str, Any]) -> int:
    step = number_or(spec.get("step"), 0.5)
    if step <= 0:
        return 0
    return max(0, -math.floor(math.log10(step)))


def _float_round_option(spec: Mapping[str, Any]) -> float | None:
    precision = _float_precision(spec)
    explicit = spec.get("round")
    if precision and not truthy(explicit):
        return float(10**-precision)
    return (
        explicit if isinstance(explicit, int | float) and not isinstance(explicit, bool) else None
    )


def _round_float(value: Any, spec: Mapping[str, Any]) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return value
    rounding = _float_round_option(spec)
    if not rounding:
        return value
    precision = _float_precision(spec)
    rounded = js_to_fixed_number(js_math_round(value / rounding) * rounding, precision)
    low, high = _numeric_range(spec)
    return _int_if_whole(min(max(rounded, low), high))


def _int_if_whole(value: float) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
