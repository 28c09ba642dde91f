"""Legacy group nodes (`extra.groupNodes`), expanded as the editor's group-node extension does.

A group node type `workflow>NAME` is defined by a saved mini-graph: inner nodes (by index),
links `[origin_index, origin_slot, target_index, target_slot, origin_id, type]` (origin_index is
null for links entering from outside) and `external` outputs. Its widgets are the inner nodes'
widgets, renamed when names repeat (`"<title> <input>"`), and its sockets are the inner inputs
no inner link feeds. When queued, the group's inner nodes are rebuilt from the saved data, take
the group's widget values, and are sent with ids `"<group id>:<inner index>"`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.comfy.workflow.convert_js import to_js_string, truthy
from comfyfleet.comfy.workflow.convert_nodes import FRONTEND_TYPES
from comfyfleet.comfy.workflow.ui_widgets import WIDGET_TYPES, _add_editor_inputs
from comfyfleet.models.nodes import NodeDef, parse_node_def

PREFIX = "workflow>"


def group_type_name(name: str) -> str:
    return PREFIX + name


def legacy_type(node_type: str) -> str:
    """Old files wrote `workflow/NAME`; the editor renames it to `workflow>NAME`."""
    return (
        PREFIX + node_type[len("workflow/") :] if node_type.startswith("workflow/") else node_type
    )


@dataclass
class GroupConfig:
    """One group node type: its definition and how its slots map to the inner nodes."""

    name: str
    nodes: list[dict[str, Any]]
    required: dict[str, list[Any]] = field(default_factory=dict)
    outputs: list[Any] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    output_is_list: list[bool] = field(default_factory=list)
    links_from: dict[int, dict[int, list[list[Any]]]] = field(default_factory=dict)
    links_to: dict[int, dict[int, list[Any]]] = field(default_factory=dict)
    external_from: dict[int, dict[int, Any]] = field(default_factory=dict)
    old_to_new_input: dict[int, dict[int, int]] = field(default_factory=dict)
    old_to_new_widget: dict[int, dict[str, str | None]] = field(default_factory=dict)
    new_to_old_widget: dict[str, tuple[int, str]] = field(default_factory=dict)
    new_to_old_output: dict[int, tuple[int, int]] = field(default_factory=dict)
    primitive_defs: dict[int, list[Any]] = field(default_factory=dict)
    primitive_to_widget: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    input_count: int = 0

    def node_def(self) -> NodeDef:
        raw = {
            "input": {"required": self.required},
            "output": self.outputs,
            "output_name": self.output_names,
            "output_is_list": self.output_is_list,
            "name": group_type_name(self.name),
            "display_name": self.name,
            "category": "group nodes>workflow",
            "python_module": "custom_nodes." + self.name,
        }
        return parse_node_def(group_type_name(self.name), raw)


def _spec_type(spec: Any) -> str:
    if not isinstance(spec, list | tuple) or not spec:
        return "*"
    return "COMBO" if isinstance(spec[0], list | tuple) else str(spec[0])


class _Builder:
    """Builds a GroupConfig from saved group data, following the editor's registration."""

    def __init__(self, name: str, data: Mapping[str, Any], defs: Mapping[str, Any]) -> None:
        self.cfg = GroupConfig(name, [dict(n) for n in data.get("nodes") or []])
        self.data = data
        self.defs = defs
        self.converted_jobs: list[
            tuple[dict[str, Any], list[str], dict[int, str], dict[str, Any]]
        ] = []
        self.seen_inputs: dict[str, int] = {}
        self.seen_outputs: set[str] = set()
        self._read_links()

    def _read_links(self) -> None:
        cfg = self.cfg
        for link in self.data.get("links") or []:
            if not isinstance(link, list) or len(link) < 4 or link[0] is None:
                continue
            src, src_slot, dst, dst_slot = link[0], link[1], link[2], link[3]
            cfg.links_from.setdefault(src, {}).setdefault(src_slot, []).append(link)
            cfg.links_to.setdefault(dst, {})[dst_slot] = link
        for ext in self.data.get("external") or []:
            if isinstance(ext, list) and len(ext) >= 3:
                cfg.external_from.setdefault(ext[0], {})[ext[1]] = ext[2]

    def build(self) -> GroupConfig:
        for index, node in enumerate(self.cfg.nodes):
            self._process_node(index, node)
        for job in self.converted_jobs:
            self._process_converted(*job)
        return self.cfg

    def _node_def(self, index: int, node: Mapping[str, Any]) -> dict[str, Any] | None:
        node_type = node.get("type")
        if node_type in self.defs:
            return dict(self.defs[str(node_type)])
        links_from = self.cfg.links_from.get(index)
        if node_type == "PrimitiveNode":
            if not links_from:
                return None
            first = links_from[0][0]
            kind: Any = first[5] if len(first) > 5 else "*"
            if kind == "COMBO":
                source = ((node.get("outputs") or [{}])[0].get("widget") or {}).get("name")
                target_def = self.defs.get(str(self.cfg.nodes[first[2]].get("type")), {})
                inputs = target_def.get("input") or {}
                spec = (inputs.get("required") or {}).get(source) or (
                    inputs.get("optional") or {}
                ).get(source)
                kind = spec[0] if spec else kind
            config: list[Any] = [kind, {}]
            self.cfg.primitive_defs[index] = config
            return {"input": {"required": {"value": config}}, "output": [kind]}
        if node_type == "Reroute":
            links_to = self.cfg.links_to.get(index)
            if links_to and links_from and not self.cfg.external_from.get(index, {}).get(0):
                return None
            reroute_type: Any = "*"
            if links_from:
                for link in links_from.get(0, []):
                    target = self.cfg.nodes[link[2]]
                    inputs = target.get("inputs") or []
                    if reroute_type == "*" and link[3] < len(inputs):
                        reroute_type = inputs[link[3]].get("type")
            elif links_to and 0 in links_to:
                origin = self.cfg.nodes[links_to[0][0]]
                reroute_type = (origin.get("outputs") or [])[links_to[0][1]].get("type")
            return {
                "input": {"required": {str(reroute_type): [reroute_type, {"forceInput": True}]}},
                "output": [reroute_type],
            }
        return None

    def _process_node(self, index: int, node: dict[str, Any]) -> None:
        definition = self._node_def(index, node)
        if definition is None:
            return
        section = definition.get("input") or {}
        inputs = {**(section.get("required") or {}), **(section.get("optional") or {})}
        if inputs:
            self._process_inputs(index, node, inputs)
        if definition.get("output"):
            self._process_outputs(index, node, definition)

    def _input_config(
        self,
        index: int,
        node: Mapping[str, Any],
        input_name: str,
        config: list[Any],
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, list[Any], Mapping[str, Any] | None]:
        custom = (((self.data.get("config") or {}).get(str(index)) or {}).get("input") or {}).get(
            input_name
        )
        label = next(
            (i.get("label") for i in node.get("inputs") or [] if i.get("name") == input_name), None
        )
        name = (custom or {}).get("name") or label or input_name
        key, prefix = name, ""
        if (
            node.get("type") == "PrimitiveNode" and truthy(node.get("title"))
        ) or name in self.seen_inputs:
            title = node.get("title")
            prefix = f"{to_js_string(title if title is not None else node.get('type'))} "
            key = name = f"{prefix}{input_name}"
            if name in self.seen_inputs:
                name = f"{prefix}{self.seen_inputs[name]} {input_name}"
        self.seen_inputs[key] = self.seen_inputs.get(key, 1) + 1
        if input_name in ("seed", "noise_seed"):
            extra = {**(extra or {}), "control_after_generate": f"{prefix}control_after_generate"}
        if config and config[0] == "IMAGEUPLOAD":
            wanted = (config[1] if len(config) > 1 else {}).get("widget") or "image"
            renamed = self.cfg.old_to_new_widget.get(index, {}).get(wanted)
            extra = {**(extra or {}), "widget": renamed or "image"}
        if extra:
            config = [config[0], {**(config[1] if len(config) > 1 else {}), **extra}]
        return name, config, custom

    def _process_inputs(self, index: int, node: dict[str, Any], inputs: dict[str, Any]) -> None:
        cfg = self.cfg
        slots: list[str] = []
        converted: dict[int, str] = {}
        widget_map = cfg.old_to_new_widget.setdefault(index, {})
        saved_inputs = node.get("inputs") or []
        for input_name, spec in inputs.items():
            if _spec_type(spec) not in WIDGET_TYPES:
                slots.append(input_name)
                continue
            position = next(
                (
                    i
                    for i, s in enumerate(saved_inputs)
                    if s.get("name") == input_name
                    and (s.get("widget") or {}).get("name") == input_name
                ),
                -1,
            )
            if position > -1:
                converted[position] = input_name
                widget_map[input_name] = None
                continue
            name, config, _ = self._input_config(index, node, input_name, spec)
            cfg.required[name] = config
            widget_map[input_name] = name
            cfg.new_to_old_widget[name] = (index, input_name)
        links_to = cfg.links_to.get(index, {})
        input_map = cfg.old_to_new_input.setdefault(index, {})
        for slot, input_name in enumerate(slots):
            if slot in links_to:
                self._primitive_connection(links_to[slot], input_name, inputs)
                continue
            name, config, custom = self._input_config(index, node, input_name, inputs[input_name])
            if custom and custom.get("visible") is False:
                continue
            cfg.required[name] = config
            input_map[slot] = cfg.input_count
            cfg.input_count += 1
        self.converted_jobs.append((node, slots, converted, inputs))

    def _process_converted(
        self,
        node: dict[str, Any],
        slots: list[str],
        converted: dict[int, str],
        inputs: dict[str, Any],
    ) -> None:
        cfg = self.cfg
        index = cfg.nodes.index(node)
        links_to = cfg.links_to.get(index, {})
        input_map = cfg.old_to_new_input.setdefault(index, {})
        # The editor sorts these positions as strings ("10" before "9").
        ordered = [converted[k] for k in sorted(converted, key=str)]
        for offset, input_name in enumerate(ordered):
            slot = len(slots) + offset
            if slot in links_to:
                self._primitive_connection(links_to[slot], input_name, inputs)
                continue
            name, config, _ = self._input_config(
                index, node, input_name, inputs[input_name], {"defaultInput": True}
            )
            cfg.required[name] = config
            cfg.new_to_old_widget[name] = (index, input_name)
            cfg.old_to_new_widget.setdefault(index, {})[input_name] = name
            input_map[slot] = cfg.input_count
            cfg.input_count += 1

    def _primitive_connection(
        self, link: list[Any], input_name: str, inputs: dict[str, Any]
    ) -> None:
        cfg = self.cfg
        source = link[0]
        if cfg.nodes[source].get("type") != "PrimitiveNode" or source not in cfg.primitive_defs:
            return
        config = cfg.primitive_defs[source]
        target_opts = inputs[input_name][1] if len(inputs[input_name]) > 1 else {}
        config[1:] = [dict(target_opts or {})]
        name = cfg.old_to_new_widget.get(source, {}).get("value") or ""
        config[1]["control_after_generate"] = True
        config[1]["control_prefix"] = name[: len(name) - 6]
        cfg.primitive_to_widget.setdefault(source, []).append((link[2], input_name))

    def _process_outputs(
        self, index: int, node: Mapping[str, Any], definition: Mapping[str, Any]
    ) -> None:
        cfg = self.cfg
        outputs = definition.get("output") or []
        custom_outputs = (
            ((self.data.get("config") or {}).get(str(index)) or {}).get("output")
        ) or {}
        for slot, kind in enumerate(outputs):
            internal = slot in cfg.links_from.get(index, {}) and not cfg.external_from.get(
                index, {}
            ).get(slot)
            custom = custom_outputs.get(str(slot)) or {}
            visible = custom.get("visible", not internal)
            if not visible:
                continue
            cfg.new_to_old_output[len(cfg.outputs)] = (index, slot)
            cfg.outputs.append(kind)
            lists = definition.get("output_is_list") or []
            cfg.output_is_list.append(bool(lists[slot]) if slot < len(lists) else False)
            label = custom.get("name") or (definition.get("output_name") or outputs)[slot]
            name = str(label)
            if name in self.seen_outputs:
                prefix = f"{to_js_string(node.get('title') or node.get('type'))} "
                name = f"{prefix}{label}"
                if name in self.seen_outputs:
                    name = f"{prefix}{index} {label}"
            self.seen_outputs.add(name)
            cfg.output_names.append(name)


def editor_defs(catalog: Mapping[str, NodeDef]) -> dict[str, Any]:
    """Raw definitions as the editor holds them after its extensions added inputs."""
    defs: dict[str, Any] = {}
    for name in catalog:
        raw = copy.deepcopy(dict(catalog[name].raw))
        section = dict(raw.get("input") or {})
        required = dict(section.get("required") or {})
        _add_editor_inputs(name, required)
        section["required"] = required
        raw["input"] = section
        defs[name] = raw
    return defs


def build_group_configs(
    group_nodes: Mapping[str, Any], catalog: Mapping[str, NodeDef]
) -> dict[str, GroupConfig]:
    """Group types whose inner node types are all known (others stay unknown types)."""
    if not group_nodes:
        return {}
    defs = editor_defs(catalog)
    configs: dict[str, GroupConfig] = {}
    for name, data in group_nodes.items():
        if not isinstance(data, Mapping):
            continue
        inner_types = [n.get("type") for n in data.get("nodes") or [] if isinstance(n, Mapping)]
        if any(t not in defs and t not in FRONTEND_TYPES for t in inner_types):
            continue
        configs[group_type_name(str(name))] = _Builder(str(name), data, defs).build()
    return configs
