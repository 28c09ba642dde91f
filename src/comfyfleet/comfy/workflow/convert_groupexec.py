"""Queueing a legacy group node: its inner nodes, their values and their links.

Inner nodes are rebuilt from the group's saved data and take the values of the group node's
widgets. An inner input fed from outside the group resolves to the node wired to the matching
group socket; one fed by another inner node resolves to `"<group id>:<index>"`. Neither is
followed through bypassed or virtual nodes (the editor does not), so such links are dropped when
the prompt is cleaned. A consumer of a group output resolves to the inner node behind it.
"""

from __future__ import annotations

from typing import Any

from comfyfleet.comfy.workflow.convert_groupnodes import GroupConfig
from comfyfleet.comfy.workflow.convert_nodes import LiveGraph, LiveNode, NodeFactory
from comfyfleet.comfy.workflow.convert_resolve import ExecNode, Resolved
from comfyfleet.comfy.workflow.ui_graph import MODE_BYPASS, node_key, parse_node
from comfyfleet.errors import ConversionError


class GroupExpansion:
    """The inner nodes of one group node instance and the link rules between them."""

    def __init__(
        self, group: LiveNode, config: GroupConfig, factory: NodeFactory, root: LiveGraph
    ) -> None:
        self.group = group
        self.config = config
        where = f"group node {group.key} ({group.type})"
        self.inner: list[LiveNode] = []
        for index, raw in enumerate(config.nodes):
            data = {**raw, "id": raw.get("id", index)}
            node = factory.create(parse_node(data, where), group.graph, where, root)
            node.id = f"{group.key}:{index}"
            self.inner.append(node)

    def update_inner_widgets(self) -> None:
        """Copy the group node's widget values into the inner widgets they stand for."""
        cfg = self.config
        for new_name, (index, input_name) in cfg.new_to_old_widget.items():
            widget = self.group.widget(new_name)
            if widget is None:
                continue
            value = widget.value
            inner = self.inner[index]
            if inner.type == "PrimitiveNode":
                for target_index, target_input in cfg.primitive_to_widget.get(index, []):
                    target_widget = self.inner[target_index].widget(target_input)
                    if target_widget is not None:
                        target_widget.value = value
                continue
            if inner.type == "Reroute":
                for link in cfg.links_from.get(index, {}).get(0, []):
                    target = self.inner[link[2]]
                    if link[3] < len(target.inputs):
                        target_widget = target.widget_for_input(target.inputs[link[3]])
                        if target_widget is not None:
                            target_widget.value = value
            inner_widget = inner.widget(input_name)
            if inner_widget is not None:
                inner_widget.value = value

    def input_origin(self, index: int, slot: int) -> tuple[LiveNode, int] | None:
        """The node feeding inner node `index` at `slot`, and its output slot."""
        cfg = self.config
        external = cfg.old_to_new_input.get(index, {}).get(slot)
        if external is not None:
            if external >= len(self.group.inputs):
                return None
            link_id = self.group.inputs[external].link
            link = self.group.graph.links.get(link_id) if link_id is not None else None
            origin = self.group.graph.node(link.origin_id) if link else None
            return (origin, link.origin_slot) if origin is not None and link else None
        inner_link = cfg.links_to.get(index, {}).get(slot)
        if not inner_link:
            return None
        origin = self.inner[inner_link[0]]
        if origin.type == "PrimitiveNode":
            return None  # primitives already wrote their value into the widget
        return origin, inner_link[1]

    def output_origin(self, slot: int) -> tuple[int, int]:
        """Inner node index and output slot behind group output `slot` (through reroutes)."""
        mapped = self.config.new_to_old_output.get(slot)
        if mapped is None:
            raise ConversionError(f"{self.group.describe()} has no output {slot}")
        index, origin_slot = mapped
        node: LiveNode | None = self.inner[index]
        through: int | None = None
        while node is not None and node.type == "Reroute":
            origin = self.input_origin(self.inner.index(node), 0)
            node, through = (origin[0], origin[1]) if origin else (None, None)
        if node is None or node not in self.inner:
            raise ConversionError(f"{self.group.describe()} output {slot} leads nowhere")
        return self.inner.index(node), through if through is not None else origin_slot


class GroupChildExec(ExecNode):
    """An inner node of a group node, queued as `"<group id>:<index>"`."""

    def __init__(
        self,
        node: LiveNode,
        path: tuple[str, ...],
        registry: dict[str, ExecNode],
        expansion: GroupExpansion,
        index: int,
    ) -> None:
        super().__init__(node, path, registry, None)
        self.id = ":".join([*path, str(index)])
        self.expansion = expansion
        self.index = index

    def resolve_input(
        self, slot: int, visited: set[str] | None = None, wanted: Any = None
    ) -> Resolved | None:
        if len(self.id.split(":")) > 2:
            raise ConversionError(
                "legacy group nodes inside subgraphs are not supported",
                hint="convert the group node to a subgraph in the editor",
            )
        found = self.expansion.input_origin(self.index, slot)
        if found is None:
            return None
        origin, origin_slot = found
        origin_id = node_key(origin.id)
        if origin_id not in self.registry and origin_id.split(":")[-1] not in self.registry:
            raise ConversionError(
                f"inner node {self.id} of {self.expansion.group.describe()} is fed by "
                f"node {origin_id}, which is not in the graph"
            )
        return Resolved(origin_id, origin_slot)


class GroupExec(ExecNode):
    """A legacy group node: virtual itself, its outputs resolve to inner nodes."""

    def __init__(
        self, node: LiveNode, registry: dict[str, ExecNode], expansion: GroupExpansion
    ) -> None:
        super().__init__(node, (), registry, None)
        self.expansion = expansion

    @property
    def is_virtual(self) -> bool:
        return True

    def inner_nodes(self) -> list[ExecNode]:
        self.expansion.update_inner_widgets()
        path = (*self.path, self.node.key)
        return [
            GroupChildExec(inner, path, self.registry, self.expansion, index)
            for index, inner in enumerate(self.expansion.inner)
        ]

    def resolve_output(self, slot: int, wanted: Any, visited: set[str]) -> Resolved | None:
        if self.mode == MODE_BYPASS:
            order = [slot, *range(len(self.inputs))]
            match = next(
                (i for i in order if 0 <= i < len(self.inputs) and self.inputs[i][2] == wanted),
                None,
            )
            return None if match is None else self.resolve_input(match, visited)
        if not 0 <= slot < len(self.node.outputs) or not self.node.outputs[slot].links:
            raise ConversionError(f"{self.node.describe()} output {slot} has no link")
        index, origin_slot = self.expansion.output_origin(slot)
        return Resolved(f"{self.id}:{index}", origin_slot)
