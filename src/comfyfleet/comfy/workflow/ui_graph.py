"""Typed model of a UI-format workflow (what the ComfyUI editor saves).

Two link shapes exist: version 0.4 stores `[id, origin_id, origin_slot, target_id, target_slot,
type]` arrays, version 1 graphs and every subgraph definition store objects with those names.
Subgraph definitions live in `definitions.subgraphs`; inside them node id -10 is the subgraph's
input node and -20 its output node. Legacy group nodes keep their inner graphs in
`extra.groupNodes` (read by `convert_groupnodes`).

`parse_ui_graph` reads the structure and `check_links` refuses broken references, so the
converter can trust what it walks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.comfy.workflow.convert_js import to_js_string
from comfyfleet.errors import WorkflowFormatError

NodeId = int | str
SUBGRAPH_INPUT_ID = -10
SUBGRAPH_OUTPUT_ID = -20
#: Modes of a node: 0 always, 1 on event, 2 never (muted), 3 on trigger, 4 bypass.
MODE_NEVER = 2
MODE_BYPASS = 4


def node_key(node_id: Any) -> str:
    """Nodes are looked up by `String(id)`, as the editor's id map does."""
    return to_js_string(node_id)


@dataclass(frozen=True)
class UiLink:
    id: int
    origin_id: NodeId
    origin_slot: int
    target_id: NodeId
    target_slot: int
    type: Any


@dataclass(frozen=True)
class UiInput:
    name: str
    type: Any
    link: int | None
    widget: str | None  # name of the widget this socket belongs to, if any
    label: str | None = None


@dataclass(frozen=True)
class UiOutput:
    name: str
    type: Any
    links: tuple[int, ...]
    label: str | None = None


@dataclass(frozen=True)
class UiNode:
    id: NodeId
    type: str
    title: Any
    mode: int
    inputs: tuple[UiInput, ...]
    outputs: tuple[UiOutput, ...]
    widgets_values: Any  # list, or a dict some custom nodes write (then ignored)
    properties: Mapping[str, Any]

    @property
    def key(self) -> str:
        return node_key(self.id)

    def describe(self) -> str:
        title = f" '{self.title}'" if isinstance(self.title, str) and self.title else ""
        return f"node {self.key} ({self.type}){title}"


@dataclass(frozen=True)
class UiSubgraphIO:
    name: str
    type: Any
    link_ids: tuple[int, ...]
    label: str | None = None


@dataclass(frozen=True)
class UiSubgraph:
    id: str
    name: str
    inputs: tuple[UiSubgraphIO, ...]
    outputs: tuple[UiSubgraphIO, ...]
    nodes: tuple[UiNode, ...]
    links: Mapping[int, UiLink]


@dataclass(frozen=True)
class UiGraph:
    nodes: tuple[UiNode, ...]
    links: Mapping[int, UiLink]
    subgraphs: Mapping[str, UiSubgraph] = field(default_factory=dict)
    group_nodes: Mapping[str, Any] = field(default_factory=dict)
    version: Any = None


def _fail(source: str, what: str) -> WorkflowFormatError:
    return WorkflowFormatError(f"{source}: {what}")


def _int(value: Any, source: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise _fail(source, f"{what} must be an integer, not {value!r}")
    return int(value)


def _node_id(value: Any, source: str, what: str) -> NodeId:
    if isinstance(value, str) and value:
        return value
    return _int(value, source, what)


def parse_link(raw: Any, source: str) -> UiLink:
    """One link in either shape."""
    if isinstance(raw, list | tuple):
        if len(raw) < 5:
            raise _fail(source, f"link {raw!r} has fewer than 5 fields")
        values = list(raw) + [None] * (6 - len(raw))
        link_id, origin, oslot, target, tslot, ltype = values[:6]
    elif isinstance(raw, Mapping):
        link_id = raw.get("id")
        origin, oslot = raw.get("origin_id"), raw.get("origin_slot")
        target, tslot = raw.get("target_id"), raw.get("target_slot")
        ltype = raw.get("type")
    else:
        raise _fail(source, f"link {raw!r} is neither an array nor an object")
    lid = _int(link_id, source, "link id")
    where = f"link {lid}"
    return UiLink(
        id=lid,
        origin_id=_node_id(origin, source, f"{where} origin_id"),
        origin_slot=_int(oslot, source, f"{where} origin_slot"),
        target_id=_node_id(target, source, f"{where} target_id"),
        target_slot=_int(tslot, source, f"{where} target_slot"),
        type=ltype,
    )


def _parse_links(raw: Any, source: str) -> dict[int, UiLink]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise _fail(source, "'links' must be a list")
    links: dict[int, UiLink] = {}
    for item in raw:
        if item is None:
            continue
        link = parse_link(item, source)
        links[link.id] = link
    return links


def _optional_link(value: Any, source: str, where: str) -> int | None:
    return None if value is None else _int(value, source, f"{where} link")


def parse_node(raw: Any, source: str) -> UiNode:
    """One node entry of `nodes`."""
    if not isinstance(raw, Mapping):
        raise _fail(source, f"node entry {raw!r} is not an object")
    node_id = _node_id(raw.get("id"), source, "node id")
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise _fail(source, f"node {node_id} has no type")
    where = f"node {node_id} ({node_type})"
    inputs = []
    for slot in raw.get("inputs") or []:
        if not isinstance(slot, Mapping):
            raise _fail(source, f"{where} has an unreadable input {slot!r}")
        widget = slot.get("widget")
        widget_name = widget.get("name") if isinstance(widget, Mapping) else None
        name = str(slot.get("name", ""))
        inputs.append(
            UiInput(
                name=name,
                type=slot.get("type"),
                link=_optional_link(slot.get("link"), source, f"{where} input '{name}'"),
                widget=widget_name if isinstance(widget_name, str) else None,
                label=slot.get("label") if isinstance(slot.get("label"), str) else None,
            )
        )
    outputs = []
    for slot in raw.get("outputs") or []:
        if not isinstance(slot, Mapping):
            raise _fail(source, f"{where} has an unreadable output {slot!r}")
        links = tuple(_int(x, source, f"{where} output link") for x in slot.get("links") or [])
        outputs.append(
            UiOutput(
                name=str(slot.get("name", "")),
                type=slot.get("type"),
                links=links,
                label=slot.get("label") if isinstance(slot.get("label"), str) else None,
            )
        )
    mode = raw.get("mode", 0)
    properties = raw.get("properties")
    return UiNode(
        id=node_id,
        type=node_type,
        title=raw.get("title"),
        mode=mode if isinstance(mode, int) and not isinstance(mode, bool) else 0,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        widgets_values=raw.get("widgets_values"),
        properties=properties if isinstance(properties, Mapping) else {},
    )


def _parse_nodes(raw: Any, source: str) -> tuple[UiNode, ...]:
    if not isinstance(raw, list):
        raise _fail(source, "'nodes' must be a list")
    nodes = tuple(parse_node(item, source) for item in raw)
    seen: set[str] = set()
    for node in nodes:
        if node.key in seen:
            raise _fail(source, f"two nodes have the id {node.key}")
        seen.add(node.key)
    return nodes


def _parse_io(raw: Any, source: str, where: str) -> tuple[UiSubgraphIO, ...]:
    slots = []
    for item in raw or []:
        if not isinstance(item, Mapping):
            raise _fail(source, f"{where} has an unreadable slot {item!r}")
        slots.append(
            UiSubgraphIO(
                name=str(item.get("name", "")),
                type=item.get("type"),
                link_ids=tuple(_int(x, source, f"{where} link") for x in item.get("linkIds") or []),
                label=item.get("label") if isinstance(item.get("label"), str) else None,
            )
        )
    return tuple(slots)


def _collect_subgraphs(raw: Any, source: str, into: dict[str, UiSubgraph]) -> None:
    definitions = raw.get("definitions") if isinstance(raw, Mapping) else None
    if not isinstance(definitions, Mapping):
        return
    for item in definitions.get("subgraphs") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise _fail(source, "a subgraph definition has no id")
        sub_id = item["id"]
        where = f"subgraph '{item.get('name') or sub_id}'"
        if sub_id in into:
            continue
        into[sub_id] = UiSubgraph(
            id=sub_id,
            name=str(item.get("name") or sub_id),
            inputs=_parse_io(item.get("inputs"), source, f"{where} inputs"),
            outputs=_parse_io(item.get("outputs"), source, f"{where} outputs"),
            nodes=_parse_nodes(item.get("nodes") or [], f"{source}, {where}"),
            links=_parse_links(item.get("links"), f"{source}, {where}"),
        )
        _collect_subgraphs(item, source, into)


def parse_ui_graph(raw: Mapping[str, Any], source: str = "workflow") -> UiGraph:
    """Read a UI-format workflow; `source` names it in error messages."""
    extra = raw.get("extra")
    group_nodes = extra.get("groupNodes") if isinstance(extra, Mapping) else None
    subgraphs: dict[str, UiSubgraph] = {}
    _collect_subgraphs(raw, source, subgraphs)
    return UiGraph(
        nodes=_parse_nodes(raw.get("nodes"), source),
        links=_parse_links(raw.get("links"), source),
        subgraphs=subgraphs,
        group_nodes=group_nodes if isinstance(group_nodes, Mapping) else {},
        version=raw.get("version"),
    )


def _check_network(
    nodes: Sequence[UiNode],
    links: Mapping[int, UiLink],
    where: str,
    io: tuple[int, int] | None,
) -> None:
    """Every link joins existing nodes (or subgraph IO slots), every input link exists."""
    by_key = {node.key: node for node in nodes}

    def describe(key: str) -> str:
        node = by_key.get(key)
        return node.describe() if node else f"node {key}"

    for link in links.values():
        origin, target = node_key(link.origin_id), node_key(link.target_id)
        if io is not None and link.origin_id == SUBGRAPH_INPUT_ID:
            if not 0 <= link.origin_slot < io[0]:
                raise WorkflowFormatError(
                    f"{where}: link {link.id} starts at subgraph input {link.origin_slot}, "
                    f"which does not exist"
                )
        elif origin not in by_key:
            raise WorkflowFormatError(
                f"{where}: {describe(target)} links to missing node {origin} (link {link.id})"
            )
        if io is not None and link.target_id == SUBGRAPH_OUTPUT_ID:
            if not 0 <= link.target_slot < io[1]:
                raise WorkflowFormatError(
                    f"{where}: link {link.id} ends at subgraph output {link.target_slot}, "
                    f"which does not exist"
                )
        elif target not in by_key:
            raise WorkflowFormatError(
                f"{where}: {describe(origin)} links to missing node {target} (link {link.id})"
            )
    for node in nodes:
        for slot in node.inputs:
            if slot.link is not None and slot.link not in links:
                raise WorkflowFormatError(
                    f"{where}: {node.describe()} input '{slot.name}' uses link {slot.link}, "
                    f"which is not in the workflow's links"
                )


def check_links(graph: UiGraph, source: str = "workflow") -> None:
    """Refuse links to missing nodes and inputs that name missing links.

    Subgraph IO slots listing link ids that do not exist are tolerated, as the editor does.
    """
    _check_network(graph.nodes, graph.links, source, None)
    for sub in graph.subgraphs.values():
        io = (len(sub.inputs), len(sub.outputs))
        _check_network(sub.nodes, sub.links, f"{source}, subgraph '{sub.name}'", io)
