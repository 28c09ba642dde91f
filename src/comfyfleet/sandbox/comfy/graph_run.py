"""Execution order and output caching as ComfyUI 0.3.64 does them (comfy_execution/).

`ExecutionList` is the topological dissolve of `comfy_execution/graph.py`: nodes are added from
the outputs to execute, cached nodes are not expanded, and among ready nodes an output (or
async) node is picked first, then one that feeds an output, then one two steps from an output.
`signature` is `CacheKeySetInputSignature`: class, IS_CHANGED value, (node id for nodes with a
hidden UNIQUE_ID), inputs with links replaced by ancestor positions, then every ancestor's own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
    )


class Uncacheable:
    """A signature part that equals nothing else (ComfyUI's NaN): never a cache hit."""

    def __repr__(self) -> str:
        return "nan"


def to_hashable(value: Any) -> Hashable:
    if value is None or isinstance(value, int | float | str | bool):
        return value
    if isinstance(value, Mapping):
        return ("dict", tuple((to_hashable(k), to_hashable(v)) for k, v in sorted(value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(to_hashable(v) for v in value))
    return Uncacheable()


def signature(
    prompt: Mapping[str, Any],
    node_id: str,
    is_changed: Callable[[str], Hashable],
    includes_id: Callable[[str], bool],
) -> Hashable:
    """The cache key of `node_id`'s output in this prompt."""
    ancestors: list[str] = []
    order: dict[str, int] = {}

    def walk(nid: str) -> None:
        node = prompt.get(nid)
        if node is None:
            return
        inputs = node.get("inputs", {})
        for key in sorted(inputs):
            if is_link(inputs[key]):
                src = inputs[key][0]
                if src not in order:
                    ancestors.append(src)
                    order[src] = len(ancestors) - 1
                    walk(src)

    def immediate(nid: str) -> Hashable:
        node = prompt.get(nid)
        if node is None:
            return (Uncacheable(),)
        class_type = node["class_type"]
        parts: list[Hashable] = [class_type, is_changed(nid)]
        if includes_id(class_type):
            parts.append(nid)
        inputs = node.get("inputs", {})
        for key in sorted(inputs):
            value = inputs[key]
            if is_link(value):
                parts.append((key, ("ANCESTOR", order[value[0]], value[1])))
            else:
                parts.append((key, to_hashable(value)))
        return tuple(parts)

    walk(node_id)
    return (immediate(node_id), *(immediate(a) for a in ancestors))


class ExecutionList:
    """Pending nodes, what blocks what, and ComfyUI's choice of the next node to run."""

    def __init__(
        self,
        prompt: Mapping[str, Any],
        is_output: Callable[[str], bool],
        is_async: Callable[[str], bool],
        is_cached: Callable[[str], bool],
    ) -> None:
        self._prompt = prompt
        self._is_output = is_output
        self._is_async = is_async
        self._is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[Any, bool]]] = {}

    def add_node(self, node_id: str) -> None:
        stack = [node_id]
        links: list[tuple[str, Any, str]] = []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self._prompt[unique_id].get("inputs", {}).values():
                if is_link(value) and not self._is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], value[1], unique_id))
        for link in links:
            self._add_strong_link(*link)

    def _add_strong_link(self, from_id: str, socket: Any, to_id: str) -> None:
        if self._is_cached(from_id):
            return
        self.add_node(from_id)
        if to_id not in self.blocking[from_id]:
            self.blocking[from_id][to_id] = {}
            self.block_count[to_id] += 1
        self.blocking[from_id][to_id][socket] = True

    def is_empty(self) -> bool:
        return not self.pending

    def next_node(self) -> str | None:
        """The node to run next, or None when nothing is ready (a dependency cycle)."""
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            return None
        for node_id in ready:
            if self._is_output(node_id) or self._is_async(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking[blocked]):
                    return node_id
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]


class OutputCaches:
    """Node outputs and UI results by signature, and per-node objects (ComfyUI's CacheSet)."""

    def __init__(self) -> None:
        self.outputs: dict[Hashable, tuple[Any, ...]] = {}
        self.ui: dict[Hashable, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def keep_only(self, signatures: Mapping[str, Hashable], prompt: Mapping[str, Any]) -> None:
        """ComfyUI's classic cache: entries the new prompt does not use are dropped."""
        used = set(signatures.values())
        self.outputs = {k: v for k, v in self.outputs.items() if k in used}
        self.ui = {k: v for k, v in self.ui.items() if k in used}
        ids = {(nid, node["class_type"]) for nid, node in prompt.items()}
        self.objects = {k: v for k, v in self.objects.items() if k in ids}
