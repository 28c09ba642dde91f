"""Executable nodes and link resolution, as the editor flattens a graph before queueing.

Every node becomes an `ExecNode` with an execution id: its own id, prefixed by the ids of the
subgraph instances that contain it (`"106:87"`). Following an input's link back to the node that
really produces the value:

* a bypassed (mode 4) node passes through one of its own inputs: the input at the same index
  when its type fits both the output and the wanted type, else the first exactly-typed input,
  else the first compatible one; none fitting drops the input;
* Reroutes and other virtual nodes pass through the input at the same index;
* a subgraph instance is entered at the inner node wired to that subgraph output;
* inside a subgraph, a link from the subgraph's input node climbs out to the instance's own
  input, or, when that input is unconnected, yields the value of its promoted widget.

Muted (mode 2) nodes are not skipped here: links to them are deleted once the prompt is built.
Only the node's own mode counts, so nodes inside a muted subgraph instance still run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from comfyfleet.comfy.workflow.convert_js import is_array_index
from comfyfleet.comfy.workflow.convert_nodes import LiveGraph, LiveNode
from comfyfleet.comfy.workflow.ui_graph import MODE_BYPASS, SUBGRAPH_INPUT_ID
from comfyfleet.errors import ConversionError

_NO_WIDGET = object()


@dataclass(frozen=True)
class Resolved:
    """Where an input's value comes from: an output slot, or a widget value."""

    origin_id: str
    origin_slot: int
    widget_value: Any = _NO_WIDGET

    @property
    def is_widget(self) -> bool:
        return self.widget_value is not _NO_WIDGET


def is_valid_connection(type_a: Any, type_b: Any) -> bool:
    """The editor's type check: `*`/empty match anything, `A,B` lists match any member."""
    a: Any = 0 if type_a in ("", "*") else type_a
    b: Any = 0 if type_b in ("", "*") else type_b
    if not a or not b or a == b or (str(a) == "-1" and str(b) == "-1"):
        return True
    sa, sb = str(a).lower(), str(b).lower()
    if "," not in sa and "," not in sb:
        return sa == sb
    return any(is_valid_connection(x, y) for x in sa.split(",") for y in sb.split(","))


class ExecNode:
    """A node as queued: its execution id and how its inputs resolve."""

    def __init__(
        self,
        node: LiveNode,
        path: tuple[str, ...],
        registry: dict[str, ExecNode],
        subgraph_node: LiveNode | None,
    ) -> None:
        self.node = node
        self.path = path
        self.registry = registry
        self.subgraph_node = subgraph_node
        self.id = ":".join([*path, node.key])
        self.graph: LiveGraph = node.graph
        self.inputs = [(slot.link, slot.name, slot.type) for slot in node.inputs]

    @property
    def mode(self) -> int:
        return self.node.mode

    @property
    def is_virtual(self) -> bool:
        return self.node.is_virtual

    def inner_nodes(self) -> list[ExecNode]:
        if self.node.kind == "subgraph":
            return expand_subgraph(self.node, self.registry, self.path, self.subgraph_node)
        return [self]

    def _guard(self, visited: set[str], direction: str, slot: int) -> None:
        scope = self.subgraph_node.type if self.subgraph_node else "undefined"
        unique = f"{scope}:{self.node.key}[{direction}]{slot}"
        if unique in visited:
            where = f" at path {':'.join(self.path)}" if self.path else ""
            raise ConversionError(
                f"circular link while resolving {self.node.describe()}{where}",
                hint="a loop of bypassed or rerouted nodes feeds itself; break the loop",
            )
        visited.add(unique)

    def resolve_input(
        self, slot: int, visited: set[str] | None = None, wanted: Any = None
    ) -> Resolved | None:
        visited = set() if visited is None else visited
        self._guard(visited, "I", slot)
        if not 0 <= slot < len(self.inputs):
            raise ConversionError(f"{self.node.describe()} has no input {slot}")
        link_id, name, slot_type = self.inputs[slot]
        if link_id is None:
            return None
        link = self.graph.links.get(link_id)
        if link is None:
            raise ConversionError(
                f"{self.node.describe()} input '{name}' uses missing link {link_id}"
            )
        owner = self.subgraph_node
        if owner is not None and link.origin_id == SUBGRAPH_INPUT_ID:
            return self._resolve_from_instance(owner, link.origin_slot, name, visited)
        origin = self.graph.node(link.origin_id)
        if origin is None:
            raise ConversionError(
                f"{self.node.describe()} input '{name}' links to missing node {link.origin_id}"
            )
        origin_dto = self._lookup([*self.path, origin.key])
        return origin_dto.resolve_output(
            link.origin_slot, slot_type if wanted is None else wanted, visited
        )

    def _resolve_from_instance(
        self, owner: LiveNode, index: int, name: str, visited: set[str]
    ) -> Resolved | None:
        if not 0 <= index < len(owner.inputs):
            raise ConversionError(f"subgraph {owner.describe()} has no input {index} for '{name}'")
        outer = owner.inputs[index]
        if outer.link is None:
            widget = owner.widget_for_input(outer)
            if widget is None:
                return None
            return Resolved(self.id, -1, widget.value)
        outer_link = owner.graph.links.get(outer.link)
        if outer_link is None:
            raise ConversionError(f"subgraph {owner.describe()} input '{name}' has no link")
        owner_dto = self._lookup(list(self.path))
        return owner_dto.resolve_input(outer_link.target_slot, visited)

    def resolve_output(self, slot: int, wanted: Any, visited: set[str]) -> Resolved | None:
        self._guard(visited, "O", slot)
        if self.mode == MODE_BYPASS:
            index = self._bypass_slot(slot, wanted)
            return None if index == -1 else self.resolve_input(index, visited)
        if self.node.kind == "subgraph":
            return self._resolve_subgraph_output(slot, wanted, visited)
        if self.node.is_virtual:
            if 0 <= slot < len(self.inputs):
                return self.resolve_input(slot, visited, wanted)
            return None
        return Resolved(self.id, slot)

    def _bypass_slot(self, slot: int, wanted: Any) -> int:
        inputs = self.inputs
        if not 0 <= slot < len(self.node.outputs):
            raise ConversionError(f"bypassed {self.node.describe()} has no output {slot}")
        output_type = self.node.outputs[slot].type
        if wanted in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot < len(inputs):
            own = inputs[slot][2]
            if is_valid_connection(own, output_type) and is_valid_connection(own, wanted):
                return slot
        for index, (_, _, kind) in enumerate(inputs):
            if kind == wanted:
                return index
        for index, (_, _, kind) in enumerate(inputs):
            if is_valid_connection(kind, output_type) and is_valid_connection(kind, wanted):
                return index
        return -1

    def _resolve_subgraph_output(
        self, slot: int, wanted: Any, visited: set[str]
    ) -> Resolved | None:
        definition = self.node.subgraph
        assert definition is not None and definition.definition is not None
        outputs = definition.definition.outputs
        if not 0 <= slot < len(self.node.outputs) or slot >= len(outputs):
            raise ConversionError(f"subgraph {self.node.describe()} has no output {slot}")
        inner_link = next(
            (definition.links[i] for i in outputs[slot].link_ids if i in definition.links), None
        )
        if inner_link is None:
            return None
        inner = definition.node(inner_link.origin_id)
        if inner is None:
            raise ConversionError(
                f"subgraph {self.node.describe()} output {slot} comes from a missing node"
            )
        inner_dto = self._lookup([*self.path, self.node.key, inner.key])
        return inner_dto.resolve_output(inner_link.origin_slot, wanted, visited)

    def _lookup(self, parts: list[str]) -> ExecNode:
        key = ":".join(parts)
        found = self.registry.get(key)
        if found is None:
            raise ConversionError(
                f"no executable node {key} while resolving {self.node.describe()}"
            )
        return found


def expand_subgraph(
    instance: LiveNode,
    registry: dict[str, ExecNode],
    path: tuple[str, ...],
    container: LiveNode | None,
    out: list[ExecNode] | None = None,
    seen: frozenset[int] = frozenset(),
) -> list[ExecNode]:
    """The inner nodes of a subgraph instance, nested instances flattened in place."""
    out = [] if out is None else out
    if id(instance) in seen:
        raise ConversionError(f"subgraph {instance.describe()} contains itself")
    seen = seen | {id(instance)}
    own = ExecNode(instance, path, registry, container)
    registry[own.id] = own
    inner_path = (*path, instance.key)
    definition = instance.subgraph
    assert definition is not None
    for node in definition.nodes:
        if node.kind == "subgraph":
            expand_subgraph(node, registry, inner_path, instance, out, seen)
        elif node.kind == "group":
            raise ConversionError(
                f"legacy group {node.describe()} sits inside a subgraph, which is not supported",
                hint="convert the group node to a subgraph in the editor",
            )
        else:
            dto = ExecNode(node, inner_path, registry, instance)
            registry[dto.id] = dto
            out.append(dto)
    return out


def execution_order(graph: LiveGraph) -> list[LiveNode]:
    """Kahn's order over the saved links, starting nodes in file order, loops appended last."""
    pending: dict[str, LiveNode] = {}
    remaining: dict[str, int] = {}
    ready: list[LiveNode] = []
    for node in graph.nodes:
        pending[node.key] = node
        count = sum(1 for slot in node.inputs if slot.link is not None)
        if count == 0:
            ready.append(node)
        else:
            remaining[node.key] = count
    ordered: list[LiveNode] = []
    visited_links: set[int] = set()
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        pending.pop(node.key, None)
        for output in node.outputs:
            for link_id in output.links:
                link = graph.links.get(link_id)
                if link is None or link.id in visited_links:
                    continue
                visited_links.add(link.id)
                target = graph.node(link.target_id)
                if target is None:
                    continue
                remaining[target.key] = remaining.get(target.key, 0) - 1
                if remaining[target.key] == 0:
                    ready.append(target)
    ordered += [pending[k] for k in _object_key_order(pending)]
    return ordered


def _object_key_order(keys: dict[str, Any]) -> Iterator[str]:
    yield from sorted((k for k in keys if is_array_index(k)), key=int)
    yield from (k for k in keys if not is_array_index(k))
