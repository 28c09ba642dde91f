"""Small facts about API-format prompts: links, titles, type compatibility."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_link(value: Any) -> bool:
    """True for `[node_id: str, slot: int | float]`, the way ComfyUI's executor recognises a link.

    Validation itself is looser (any 2-element list is followed as a link); this is the
    stricter test ComfyUI applies when it gathers input values.
    """
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
    )


def node_title(node: Any) -> str | None:
    """The `_meta.title` of a prompt node, when it has one."""
    if not isinstance(node, Mapping):
        return None
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, Mapping) else None
    return title if isinstance(title, str) and title else None


def prompt_titles(prompt: Mapping[str, Any]) -> dict[str, str]:
    """node id -> `_meta.title` for the nodes that carry one."""
    titles: dict[str, str] = {}
    for node_id, node in prompt.items():
        title = node_title(node)
        if title is not None:
            titles[str(node_id)] = title
    return titles


def types_match(received: Any, expected: Any) -> bool:
    """Whether an output of type `received` may feed an input of type `expected`.

    ComfyUI's `validate_node_input` (non-strict): equal types match, comma-joined lists match
    when they share a member, and `*` matches anything (ComfyUI's AnyType compares equal to
    every type). Non-string types (combo option lists) only match an equal value.
    """
    if received == "*" or expected == "*":
        return True
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    ours = {t.strip() for t in received.split(",")}
    theirs = {t.strip() for t in expected.split(",")}
    return bool(ours & theirs)
