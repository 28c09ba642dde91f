"""UI-format workflow → API prompt, as ComfyUI's editor (frontend 1.27.10) produces it.

`ui_to_api` loads the graph as the editor does (`convert_nodes`), lets PrimitiveNodes push their
values (`convert_primitive`), flattens subgraphs and legacy group nodes into executable nodes
(`convert_resolve`, `convert_groupexec`), then builds `graphToPrompt().output`:

1. nodes in execution order; muted (mode 2), bypassed (mode 4) and virtual nodes are skipped;
2. inputs are the serializable widget values in widget order (arrays wrapped as
   `{"__value__": [...]}`), then each linked input resolved to `[origin_id, slot]` or to a
   promoted widget's value, overwriting a widget of the same name;
3. each node is `{"inputs", "class_type", "_meta": {"title"}}`;
4. link inputs pointing at nodes that were not emitted are deleted;
5. keys are ordered as a JavaScript object orders them (numeric ids ascending, then the
   `"<subgraph>:<inner>"` ids in the order they were created).

Seeds are sent as shown in the widget: the editor applies "control after generate" only after
queueing. Dynamic prompts (`{a|b}`) are resolved with `rng`; `%date:…%` uses `now`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from comfyfleet.comfy.workflow.convert_groupexec import GroupChildExec, GroupExec, GroupExpansion
from comfyfleet.comfy.workflow.convert_groupnodes import PREFIX, build_group_configs, legacy_type
from comfyfleet.comfy.workflow.convert_js import as_json_value, js_object
from comfyfleet.comfy.workflow.convert_nodes import (
    FRONTEND_TYPES,
    SR_PROPERTY,
    LiveGraph,
    LiveNode,
    NodeFactory,
    drop_orphan_widget_inputs,
    fix_link_slots,
    new_graph,
    populate,
    subgraph_order,
)
from comfyfleet.comfy.workflow.convert_primitive import apply_primitive, setup_primitive
from comfyfleet.comfy.workflow.convert_resolve import ExecNode, execution_order
from comfyfleet.comfy.workflow.convert_text import (
    NamedNode,
    apply_text_replacements,
    process_dynamic_prompt,
    random_chooser,
)
from comfyfleet.comfy.workflow.ui_graph import (
    MODE_BYPASS,
    MODE_NEVER,
    UiGraph,
    UiNode,
    check_links,
    parse_ui_graph,
)
from comfyfleet.comfy.workflow.ui_widgets import Widget
from comfyfleet.errors import ConversionError, WorkflowFormatError
from comfyfleet.models.nodes import NodeCatalog, NodeDef

_SAMPLERS = ("KSampler", "KSamplerAdvanced")


def ui_to_api(
    ui: Mapping[str, Any],
    catalog: NodeCatalog | Mapping[str, NodeDef],
    *,
    rng: random.Random | None = None,
    now: datetime | None = None,
    source: str = "workflow",
) -> dict[str, Any]:
    """The API prompt the editor would queue for this UI-format workflow.

    Raises ConversionError naming every node whose type the catalog lacks, and
    WorkflowFormatError when the workflow is not a readable UI graph.
    """
    if not isinstance(ui, Mapping):
        raise WorkflowFormatError(f"{source}: a UI workflow must be a JSON object")
    graph = parse_ui_graph(_renamed_group_types(ui), source)
    check_links(graph, source)
    converter = _Converter(graph, catalog, rng, now or datetime.now(), source)
    return converter.run()


def _renamed_group_types(ui: Mapping[str, Any]) -> Mapping[str, Any]:
    extra = ui.get("extra")
    if not isinstance(extra, Mapping) or not extra.get("groupNodes"):
        return ui
    nodes = [
        {**n, "type": legacy_type(n["type"])}
        if isinstance(n, Mapping) and isinstance(n.get("type"), str)
        else n
        for n in ui.get("nodes") or []
    ]
    return {**ui, "nodes": nodes}


class _Converter:
    def __init__(
        self,
        ui: UiGraph,
        catalog: NodeCatalog | Mapping[str, NodeDef],
        rng: random.Random | None,
        now: datetime,
        source: str,
    ) -> None:
        self.ui = ui
        self.source = source
        self.now = now
        self.choose = random_chooser(rng)
        self.groups = build_group_configs(ui.group_nodes, catalog)
        self.factory = NodeFactory(catalog, {k: v.node_def() for k, v in self.groups.items()})
        self.expansions: dict[int, GroupExpansion] = {}
        self.root = new_graph(ui.links)

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        for sub_id in subgraph_order(self.ui):
            sub = self.ui.subgraphs[sub_id]
            graph = new_graph(sub.links, sub)
            populate(graph, sub.nodes, self.factory, self.root, f"subgraph '{sub.name}'")
            self.root.subgraphs[sub_id] = graph
        populate(self.root, self.ui.nodes, self.factory, self.root, self.source)
        self._refuse_unknown()
        for node in self.root.nodes:
            # Old files name samplers "sample_euler"; the editor strips the prefix on load.
            sampler = node.widget("sampler_name") if node.type in _SAMPLERS else None
            if sampler is not None and str(sampler.value).startswith("sample_"):
                sampler.value = sampler.value[7:]
        for graph in (*self.root.subgraphs.values(), self.root):
            for node in graph.nodes:
                drop_orphan_widget_inputs(node)
            fix_link_slots(graph)
        for graph in (*self.root.subgraphs.values(), self.root):
            for node in graph.nodes:
                if node.kind == "primitive":
                    setup_primitive(node)

    def _refuse_unknown(self) -> None:
        if self.factory.unknown:
            lines = []
            for node_type, saved, where in self.factory.unknown:
                place = "" if where == self.source else f" in {where}"
                lines.append(
                    f"  {_describe(saved, node_type)}{place}{self._inner_missing(node_type)}"
                )
            kinds = sorted({t for t, _, _ in self.factory.unknown})
            raise ConversionError(
                f"{self.source}: {len(kinds)} node type(s) unknown to this server: "
                + ", ".join(kinds)
                + "\n"
                + "\n".join(lines),
                hint="the custom nodes that define them are missing; "
                "`comfyfleet workflow deps` lists what to install",
            )
        if self.factory.browser_only:
            lines = [f"  {_describe(s, t)}" for t, s, _ in self.factory.browser_only]
            raise ConversionError(
                f"{self.source}: these nodes take their value from the browser (camera or 3D "
                "view) and cannot be converted offline:\n" + "\n".join(lines),
                hint="queue this workflow from the ComfyUI editor, or replace those nodes",
            )

    def _inner_missing(self, node_type: str) -> str:
        """For a legacy group type: the inner node types that keep it from being defined."""
        if not node_type.startswith(PREFIX):
            return ""
        data = self.ui.group_nodes.get(node_type[len(PREFIX) :])
        nodes = data.get("nodes") if isinstance(data, Mapping) else None
        types = {n.get("type") for n in nodes or [] if isinstance(n, Mapping)}
        missing = sorted(
            str(t)
            for t in types
            if self.factory.definition(str(t)) is None and t not in FRONTEND_TYPES
        )
        return f" (group node needing {', '.join(missing)})" if missing else ""

    # -- flattening ---------------------------------------------------------------------------

    def _exec_node(self, node: LiveNode, registry: dict[str, ExecNode]) -> ExecNode:
        if node.kind == "group":
            expansion = self.expansions.get(id(node))
            if expansion is None:
                expansion = GroupExpansion(node, self.groups[node.type], self.factory, self.root)
                self.expansions[id(node)] = expansion
            return GroupExec(node, registry, expansion)
        return ExecNode(node, (), registry, None)

    def run(self) -> dict[str, Any]:
        self.load()
        order = execution_order(self.root)
        for node in order:
            scratch: dict[str, ExecNode] = {}
            inner = self._exec_node(node, scratch).inner_nodes()
            for dto in inner:
                # Primitives saved inside a group never get widgets: nothing to push.
                if isinstance(dto, GroupChildExec):
                    continue
                if dto.is_virtual and dto.node.kind == "primitive":
                    apply_primitive(dto.node, self._replace)
        registry: dict[str, ExecNode] = {}
        for node in order:
            dto = self._exec_node(node, registry)
            for inner_dto in dto.inner_nodes():
                registry[inner_dto.id] = inner_dto
            registry[dto.id] = dto
        output: dict[str, Any] = {}
        for dto in registry.values():
            if dto.is_virtual or dto.mode in (MODE_NEVER, MODE_BYPASS):
                continue
            output[dto.id] = {
                "inputs": self._inputs(dto),
                "class_type": dto.node.comfy_class,
                "_meta": {"title": dto.node.title},
            }
        for entry in output.values():
            inputs = entry["inputs"]
            for name in list(inputs):
                value = inputs[name]
                if isinstance(value, list) and len(value) == 2 and value[0] not in output:
                    del inputs[name]
        result: dict[str, Any] = as_json_value(js_object(output))
        return result

    def _inputs(self, dto: ExecNode) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for widget in dto.node.widgets:
            if not widget.name or not widget.in_prompt:
                continue
            inputs[widget.name] = _wrap(self._serialize(widget))
        for index, (_, name, _) in enumerate(dto.inputs):
            resolved = dto.resolve_input(index)
            if resolved is None:
                continue
            if resolved.is_widget:
                inputs[name] = _wrap(resolved.widget_value)
            else:
                inputs[name] = [resolved.origin_id, int(resolved.origin_slot)]
        return inputs

    def _serialize(self, widget: Widget) -> Any:
        value = widget.value
        if widget.serializer == "dynamic_prompts" and isinstance(value, str):
            return process_dynamic_prompt(value, self.choose)
        if widget.serializer == "filename_prefix" and isinstance(value, str):
            return self._replace(value)
        return value

    def _replace(self, text: str) -> str:
        return apply_text_replacements(text, self._named_nodes(self.root), self.now)

    def _named_nodes(self, graph: LiveGraph) -> list[NamedNode]:
        named: list[NamedNode] = []
        for node in graph.nodes:
            if node.kind == "subgraph" and node.subgraph is not None:
                named += self._named_nodes(node.subgraph)
            widgets: dict[str, Any] = {}
            for widget in node.widgets:
                widgets.setdefault(widget.name, widget.value)
            named.append(NamedNode(node.properties.get(SR_PROPERTY), node.title, widgets))
        return named


def _wrap(value: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) else value


def _describe(saved: UiNode, node_type: str) -> str:
    title = f" '{saved.title}'" if isinstance(saved.title, str) and saved.title else ""
    return f"node {saved.key} ({node_type}){title}"
