"""Live nodes: a UI workflow loaded the way the ComfyUI editor loads it.

Each saved node becomes a `LiveNode` with the sockets and widgets its type defines, the saved
sockets merged in by name, and its `widgets_values` applied. Frontend-only node types (Note,
MarkdownNote, Reroute, PrimitiveNode), subgraph instances and legacy group nodes are "virtual":
they shape the graph but are never sent to the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.comfy.workflow.convert_js import truthy
from comfyfleet.comfy.workflow.ui_graph import (
    NodeId,
    UiGraph,
    UiLink,
    UiNode,
    UiSubgraph,
    node_key,
)
from comfyfleet.comfy.workflow.ui_widgets import (
    BROWSER_ONLY_WIDGETS,
    SAVE_NODE_TYPES,
    NodeShape,
    SocketDef,
    Widget,
    apply_widgets_values,
    build_node_shape,
    make_widgets,
    migrate_widgets_values,
)
from comfyfleet.errors import ConversionError
from comfyfleet.models.nodes import NodeDef

#: Node types the editor defines itself; the server never sees them.
FRONTEND_TYPES = {
    "PrimitiveNode": "Primitive",
    "Reroute": "Reroute",
    "Note": "Note",
    "MarkdownNote": "Markdown Note",
}
#: Types the editor renames on load (a merged node and two typos of old versions).
RENAMED_TYPES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
}
SR_PROPERTY = "Node name for S&R"
#: English names the editor shows for core nodes whose definitions carry no display_name.
EDITOR_DISPLAY_NAMES = {
    "ImageBlend": "Image Blend",
    "ImageBlur": "Image Blur",
    "ImageQuantize": "Image Quantize",
    "ImageSharpen": "Image Sharpen",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}


def class_title(node_def: NodeDef) -> str:
    """The title a node of this type gets when the workflow stores none."""
    shown = node_def.raw.get("display_name")
    if isinstance(shown, str) and shown:
        return shown
    return EDITOR_DISPLAY_NAMES.get(node_def.name, node_def.name)


@dataclass
class LiveLink:
    id: int
    origin_id: NodeId
    origin_slot: int
    target_id: NodeId
    target_slot: int
    type: Any

    @classmethod
    def of(cls, link: UiLink) -> LiveLink:
        return cls(
            link.id, link.origin_id, link.origin_slot, link.target_id, link.target_slot, link.type
        )


@dataclass
class LiveInput:
    name: str
    type: Any
    link: int | None = None
    widget: str | None = None
    config: Mapping[str, Any] | None = None  # spec of the widget input (what primitives copy)


@dataclass
class LiveOutput:
    name: str
    type: Any
    links: list[int] = field(default_factory=list)


@dataclass(eq=False)
class LiveNode:
    id: NodeId
    type: str
    kind: str  # regular | primitive | reroute | note | subgraph | group
    title: str
    mode: int
    graph: LiveGraph
    comfy_class: str | None = None
    inputs: list[LiveInput] = field(default_factory=list)
    outputs: list[LiveOutput] = field(default_factory=list)
    widgets: list[Widget] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    widgets_values: Any = None
    subgraph: LiveGraph | None = None  # the definition a subgraph node instantiates
    saved: UiNode | None = None

    @property
    def key(self) -> str:
        return node_key(self.id)

    @property
    def is_virtual(self) -> bool:
        return self.kind != "regular"

    def widget(self, name: str) -> Widget | None:
        return next((w for w in self.widgets if w.name == name), None)

    def widget_for_input(self, slot: LiveInput) -> Widget | None:
        return None if slot.widget is None else self.widget(slot.widget)

    def describe(self) -> str:
        return f"node {self.key} ({self.type}) '{self.title}'"


@dataclass(eq=False)
class LiveGraph:
    """The root graph or one subgraph definition (shared by all of its instances)."""

    links: dict[int, LiveLink]
    nodes: list[LiveNode] = field(default_factory=list)
    by_key: dict[str, LiveNode] = field(default_factory=dict)
    definition: UiSubgraph | None = None
    subgraphs: dict[str, LiveGraph] = field(default_factory=dict)  # root only

    def node(self, node_id: Any) -> LiveNode | None:
        return self.by_key.get(node_key(node_id))

    def add(self, node: LiveNode) -> None:
        self.nodes.append(node)
        self.by_key[node.key] = node


@dataclass
class NodeFactory:
    """Creates live nodes of every known type; remembers types it could not create."""

    catalog: Mapping[str, NodeDef]
    extra_defs: Mapping[str, NodeDef] = field(default_factory=dict)  # legacy group node types
    unknown: list[tuple[str, UiNode, str]] = field(default_factory=list)
    browser_only: list[tuple[str, UiNode, str]] = field(default_factory=list)

    def definition(self, class_type: str) -> NodeDef | None:
        if class_type in self.extra_defs:
            return self.extra_defs[class_type]
        if class_type in self.catalog:
            return self.catalog[class_type]
        return None

    def create(self, saved: UiNode, graph: LiveGraph, where: str, root: LiveGraph) -> LiveNode:
        node_type = RENAMED_TYPES.get(saved.type, saved.type)
        if node_type in FRONTEND_TYPES:
            node = self._frontend_node(saved, node_type, graph)
        elif node_type in root.subgraphs:
            node = self._subgraph_node(saved, node_type, graph, root.subgraphs[node_type])
        else:
            node_def = self.definition(node_type)
            if node_def is None:
                self.unknown.append((node_type, saved, where))
                node = LiveNode(saved.id, node_type, "unknown", str(saved.title or ""), 0, graph)
            else:
                node = self._regular_node(saved, node_type, node_def, graph, where)
        node.saved = saved
        return node

    # -- regular nodes -------------------------------------------------------------------

    def _regular_node(
        self, saved: UiNode, node_type: str, node_def: NodeDef, graph: LiveGraph, where: str
    ) -> LiveNode:
        shape: NodeShape = build_node_shape(node_def)
        if any(s.widget and s.config and _browser_only(s.config) for s in shape.sockets):
            self.browser_only.append((node_type, saved, where))
        title = saved.title if truthy(saved.title) else class_title(node_def)
        kind = "group" if node_type in self.extra_defs else "regular"
        node = LiveNode(saved.id, node_type, kind, _title(title), saved.mode, graph)
        node.comfy_class = node_def.name
        node.widgets = shape.widgets
        node.inputs = _merge_inputs(shape.sockets, saved)
        node.outputs = _merge_outputs(shape.outputs, saved)
        if node_type not in SAVE_NODE_TYPES:
            node.properties[SR_PROPERTY] = node_type
        node.properties.update(saved.properties)
        node.widgets_values = saved.widgets_values
        values = migrate_widgets_values(shape.definition_order, node.widgets, saved.widgets_values)
        apply_widgets_values(node.widgets, values)
        return node

    # -- frontend-only nodes ---------------------------------------------------------------

    def _frontend_node(self, saved: UiNode, node_type: str, graph: LiveGraph) -> LiveNode:
        kind = {"PrimitiveNode": "primitive", "Reroute": "reroute"}.get(node_type, "note")
        title = saved.title if truthy(saved.title) else FRONTEND_TYPES[node_type]
        node = LiveNode(saved.id, node_type, kind, _title(title), saved.mode, graph)
        node.properties.update(saved.properties)
        node.widgets_values = saved.widgets_values
        if kind == "reroute":
            node.inputs = [LiveInput("", "*")]
            node.outputs = [LiveOutput("", "*")]
        elif kind == "primitive":
            node.outputs = [LiveOutput("connect to widget input", "*")]
        elif node_type == "Note":
            node.widgets = make_widgets({"name": "text", "type": "STRING", "multiline": True})
        else:
            node.widgets = make_widgets({"name": "text", "type": "MARKDOWN"})
        apply_widgets_values(node.widgets, saved.widgets_values)
        # Saved sockets replace the constructor's ones position by position.
        node.inputs = _overlay(node.inputs, [_saved_input(s) for s in saved.inputs])
        node.outputs = _overlay(
            node.outputs, [LiveOutput(o.name, o.type, list(o.links)) for o in saved.outputs]
        )
        return node

    # -- subgraph instances ------------------------------------------------------------------

    def _subgraph_node(
        self, saved: UiNode, node_type: str, graph: LiveGraph, definition: LiveGraph
    ) -> LiveNode:
        sub = definition.definition
        assert sub is not None
        title = saved.title if truthy(saved.title) else sub.name
        node = LiveNode(saved.id, node_type, "subgraph", _title(title), saved.mode, graph)
        node.subgraph = definition
        node.properties.update(saved.properties)
        node.widgets_values = saved.widgets_values
        node.inputs = [LiveInput(slot.name, slot.type) for slot in sub.inputs]
        by_name = {s.name: s for s in saved.inputs}
        for index, slot in enumerate(node.inputs):
            stored = by_name.get(slot.name)
            if stored is None and index < len(saved.inputs) and not saved.inputs[index].name:
                stored = saved.inputs[index]
            if stored is not None:
                slot.link = stored.link
        node.outputs = [LiveOutput(slot.name, slot.type) for slot in sub.outputs]
        for out, stored_out in zip(node.outputs, saved.outputs, strict=False):
            out.links = list(stored_out.links)
        promote_widgets(node)
        apply_widgets_values(node.widgets, saved.widgets_values)
        return node


def promote_widgets(node: LiveNode) -> None:
    """A subgraph input wired to an inner widget shows that widget on the instance."""
    definition = node.subgraph
    assert definition is not None and definition.definition is not None
    io_slots = {slot.name: slot for slot in definition.definition.inputs}
    node.widgets = []
    for slot in node.inputs:
        io = io_slots.get(slot.name)
        if io is None:
            continue
        for link_id in io.link_ids:
            link = definition.links.get(link_id)
            target = definition.node(link.target_id) if link else None
            if link is None or target is None:
                continue
            inner = input_holding(target, link)
            widget = target.widget_for_input(inner) if inner else None
            if widget is None:
                continue
            node.widgets.append(widget.copy_for(slot.name))
            slot.widget = slot.name
            slot.config = inner.config if inner else None
            break


def input_holding(node: LiveNode, link: LiveLink) -> LiveInput | None:
    """The input a link arrives at: the one holding its id, else the one at its slot."""
    for slot in node.inputs:
        if slot.link == link.id:
            return slot
    return node.inputs[link.target_slot] if 0 <= link.target_slot < len(node.inputs) else None


def _browser_only(config: Mapping[str, Any]) -> bool:
    return str(config.get("widgetType") or config.get("type")) in BROWSER_ONLY_WIDGETS


def _title(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _saved_input(slot: Any) -> LiveInput:
    return LiveInput(slot.name, slot.type, slot.link, slot.widget)


def _overlay(base: list[Any], saved: list[Any]) -> list[Any]:
    merged = list(base)
    for index, item in enumerate(saved):
        if index < len(merged):
            merged[index] = item
        else:
            merged.append(item)
    return merged


def _merge_inputs(sockets: list[SocketDef], saved: UiNode) -> list[LiveInput]:
    """Defined sockets in definition order carry the saved links; unknown saved ones follow."""
    by_name = {slot.name: slot for slot in saved.inputs}
    merged: list[LiveInput] = []
    for socket in sockets:
        stored = by_name.get(socket.name)
        widget = socket.widget if socket.widget is not None else (stored.widget if stored else None)
        merged.append(
            LiveInput(
                socket.name, socket.type, stored.link if stored else None, widget, socket.config
            )
        )
    defined = {socket.name for socket in sockets}
    merged += [_saved_input(s) for s in saved.inputs if s.name not in defined]
    return merged


def _merge_outputs(defined: list[tuple[str, Any]], saved: UiNode) -> list[LiveOutput]:
    outputs = [LiveOutput(name, kind) for name, kind in defined]
    for index, stored in enumerate(saved.outputs):
        if index < len(outputs):
            outputs[index].links = list(stored.links)
        else:
            outputs.append(LiveOutput(stored.name, stored.type, list(stored.links)))
    return outputs


def drop_orphan_widget_inputs(node: LiveNode) -> None:
    """Sockets that name a widget the node does not have are removed, as the editor does."""
    if node.kind not in ("regular", "group"):
        return
    names = {w.name for w in node.widgets}
    node.inputs = [s for s in node.inputs if s.widget is None or s.widget in names]


def fix_link_slots(graph: LiveGraph) -> None:
    """Links point at the index of the input that holds them (saved indices may be stale)."""
    for node in graph.nodes:
        for index, slot in enumerate(node.inputs):
            if slot.link is not None and slot.link in graph.links:
                graph.links[slot.link].target_slot = index


def populate(
    graph: LiveGraph, nodes: tuple[UiNode, ...], factory: NodeFactory, root: LiveGraph, where: str
) -> None:
    """Create the saved nodes of one graph (root nodes can use `root.subgraphs`)."""
    for saved in nodes:
        graph.add(factory.create(saved, graph, where, root))


def new_graph(links: Mapping[int, UiLink], definition: UiSubgraph | None = None) -> LiveGraph:
    graph = LiveGraph({lid: LiveLink.of(link) for lid, link in links.items()})
    graph.definition = definition
    return graph


def subgraph_order(ui: UiGraph) -> list[str]:
    """Definitions ordered so that a nested definition is built before those that use it."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(sub_id: str) -> None:
        if state.get(sub_id) == 2:
            return
        if state.get(sub_id) == 1:
            raise ConversionError(f"subgraph '{ui.subgraphs[sub_id].name}' contains itself")
        state[sub_id] = 1
        for node in ui.subgraphs[sub_id].nodes:
            if node.type in ui.subgraphs:
                visit(node.type)
        state[sub_id] = 2
        order.append(sub_id)

    for sub_id in ui.subgraphs:
        visit(sub_id)
    return order
