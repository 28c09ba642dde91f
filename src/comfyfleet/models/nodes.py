"""Typed node definitions parsed from a ComfyUI /object_info answer.

Both combo shapes are understood: legacy V1 `[[option, ...], {opts}]` and V3
`["COMBO", {"options": [...]}]`. The original spec stays available as `raw`, because
ComfyUI echoes it back in validation errors (`input_config`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from comfyfleet.errors import WorkflowFormatError

Section = Literal["required", "optional", "hidden"]

#: Input types the frontend renders as widgets (values typed in the node, not sockets).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class InputSpec:
    """One input of a node: its name, type, options and (for combos) the allowed values."""

    name: str
    type: str
    section: Section
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[Any, ...] | None = None
    raw: Any = None

    @property
    def is_combo(self) -> bool:
        return self.choices is not None

    @property
    def is_widget(self) -> bool:
        """True when the UI shows this input as a widget (a value), not only a socket."""
        if self.section == "hidden":
            return False
        if self.options.get("forceInput"):
            return False
        return self.type in WIDGET_TYPES

    @property
    def has_control_after_generate(self) -> bool:
        """Seed-like INT inputs: the UI adds a non-serialized control widget after them."""
        return bool(self.options.get("control_after_generate"))


@dataclass(frozen=True)
class NodeDef:
    """A node class as /object_info describes it."""

    name: str
    display_name: str
    category: str
    python_module: str
    output_node: bool
    outputs: tuple[str, ...]
    output_names: tuple[str, ...]
    output_is_list: tuple[bool, ...]
    inputs: Mapping[str, InputSpec]
    raw: Mapping[str, Any]

    def section(self, section: Section) -> Iterator[InputSpec]:
        return (spec for spec in self.inputs.values() if spec.section == section)

    def visible_inputs(self) -> Iterator[InputSpec]:
        """Required then optional inputs, in `input_order`."""
        return (spec for spec in self.inputs.values() if spec.section != "hidden")


def parse_input_spec(name: str, spec: Any, section: Section) -> InputSpec:
    """Parse one `[TYPE, {opts}]` / `[[choices], {opts}]` / `"HIDDEN"` entry."""
    if section == "hidden" or isinstance(spec, str):
        type_name = spec if isinstance(spec, str) else str(spec[0]) if spec else "*"
        return InputSpec(name=name, type=type_name, section=section, raw=spec)
    if not isinstance(spec, list | tuple) or not spec:
        raise WorkflowFormatError(f"input '{name}': unreadable spec {spec!r} in object_info")
    head = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(head, list | tuple):
        return InputSpec(name, "COMBO", section, opts, tuple(head), spec)
    type_name = str(head)
    if type_name == "COMBO":
        return InputSpec(name, "COMBO", section, opts, tuple(opts.get("options", ())), spec)
    return InputSpec(name, type_name, section, opts, None, spec)


def parse_node_def(class_type: str, raw: Mapping[str, Any]) -> NodeDef:
    """Parse one /object_info entry; inputs keep `input_order` (required, optional, hidden)."""
    try:
        sections: Mapping[str, Mapping[str, Any]] = raw.get("input", {}) or {}
        order: Mapping[str, list[str]] = raw.get("input_order", {}) or {}
        inputs: dict[str, InputSpec] = {}
        for section in ("required", "optional", "hidden"):
            specs = sections.get(section) or {}
            names = list(order.get(section) or specs.keys())
            names += [n for n in specs if n not in names]
            for name in names:
                if name in specs:
                    inputs[name] = parse_input_spec(name, specs[name], section)
        outputs = tuple(
            str(o) if not isinstance(o, list) else "COMBO" for o in raw.get("output", [])
        )
        return NodeDef(
            name=str(raw.get("name", class_type)),
            display_name=str(raw.get("display_name") or class_type),
            category=str(raw.get("category", "")),
            python_module=str(raw.get("python_module", "")),
            output_node=bool(raw.get("output_node", False)),
            outputs=outputs,
            output_names=tuple(str(o) for o in raw.get("output_name", outputs)),
            output_is_list=tuple(
                bool(b) for b in raw.get("output_is_list", [False] * len(outputs))
            ),
            inputs=inputs,
            raw=raw,
        )
    except (AttributeError, TypeError) as exc:
        raise WorkflowFormatError(
            f"object_info entry for {class_type} is malformed: {exc}"
        ) from exc


class NodeCatalog(Mapping[str, NodeDef]):
    """Every node class a server knows, parsed lazily from its /object_info answer."""

    def __init__(self, object_info: Mapping[str, Any]) -> None:
        if not isinstance(object_info, Mapping):
            raise WorkflowFormatError("object_info must be a JSON object of node classes")
        self._raw = object_info
        self._parsed: dict[str, NodeDef] = {}

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._raw

    def __getitem__(self, class_type: str) -> NodeDef:
        node = self._parsed.get(class_type)
        if node is None:
            node = parse_node_def(class_type, self._raw[class_type])
            self._parsed[class_type] = node
        return node

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, class_type: object) -> bool:
        return class_type in self._raw
