"""`--set NODE.INPUT=VALUE` and `--input NODE.INPUT=PATH` applied to an API-format prompt.

NODE is a node id, else a title (`_meta.title`), else a class name; it may contain dots and
spaces (the last `.` before the first `=` ends it) or be quoted. VALUE is JSON when it parses
as JSON, else text, then coerced to the input's type from the catalog. Values are data only:
nothing is evaluated, and shell metacharacters are plain characters.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyfleet.errors import OverrideError
from comfyfleet.graph.input_files import file_input_kind
from comfyfleet.graph.model_folders import is_model_input
from comfyfleet.graph.prompt import is_link, node_title
from comfyfleet.models.nodes import InputSpec, NodeCatalog

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Change:
    """One input of one node changed by an override."""

    node_id: str
    class_type: str
    input: str
    old: Any
    new: Any
    replaced_link: bool = False  # the input was a link and is now a value
    title: str | None = None

    def describe(self) -> str:
        title = f" '{self.title}'" if self.title and self.title != self.class_type else ""
        was = f"link {self.old}" if self.replaced_link else json.dumps(self.old, ensure_ascii=False)
        return (
            f"node {self.node_id} ({self.class_type}){title}: {self.input} = "
            f"{json.dumps(self.new, ensure_ascii=False)} (was {was})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "class_type": self.class_type,
            "title": self.title,
            "input": self.input,
            "old": self.old,
            "new": self.new,
            "replaced_link": self.replaced_link,
        }


@dataclass(frozen=True)
class InputFile:
    """A local file for a node input (`--input NODE.INPUT=PATH`); `node` as the user wrote it."""

    node: str
    input: str
    path: Path


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def split_spec(spec: str, *, flag: str = "--set") -> tuple[str, str, str]:
    """`NODE.INPUT=VALUE` -> (node, input, value). NODE may be quoted to hold `.` or `=`."""
    text = spec.strip()
    if text[:1] in "\"'" and text:
        end = text.find(text[0], 1)
        if end < 0:
            raise OverrideError(f"{flag} {spec!r}: unbalanced quote in the node name")
        node, rest = text[1:end], text[end + 1 :]
        left, eq, value = rest.partition("=")
        if not eq:
            raise OverrideError(f"{flag} {spec!r}: expected NODE.INPUT=VALUE")
        name = _unquote(left[1:]) if left.startswith(".") else ""
        if not name:
            raise OverrideError(f"{flag} {spec!r}: expected '.' and an input name after the node")
        return node, name, value
    left, eq, value = text.partition("=")
    if not eq or not left:
        raise OverrideError(
            f"{flag} {spec!r}: expected NODE.INPUT=VALUE",
            hint="NODE is a node id, title or class name; quote titles holding '.' or '='",
        )
    node, dot, name = left.rpartition(".")
    if not dot:
        raise OverrideError(f"{flag} {spec!r}: expected NODE.INPUT=VALUE (no '.' before '=')")
    if not node or not name:
        raise OverrideError(f"{flag} {spec!r}: empty node or input name")
    return _unquote(node), _unquote(name), value


def _describe_node(node_id: str, node: Any) -> str:
    class_type = node.get("class_type", "?") if isinstance(node, Mapping) else "?"
    title = node_title(node)
    return f"{node_id} ({class_type})" + (f" '{title}'" if title and title != class_type else "")


def resolve_node(prompt: Mapping[str, Any], ref: str, *, flag: str = "--set") -> str:
    """The id of the node `ref` names: an id, else a title, else a class name (exact, then
    case-insensitive). Raises OverrideError listing the candidates when none or several match."""
    if ref in prompt:
        return ref
    nodes = [(str(k), v) for k, v in prompt.items() if isinstance(v, Mapping)]
    lookups = (
        lambda n: node_title(n) == ref,
        lambda n: n.get("class_type") == ref,
        lambda n: (node_title(n) or "").casefold() == ref.casefold(),
        lambda n: str(n.get("class_type", "")).casefold() == ref.casefold(),
    )
    for matches in lookups:
        found = [node_id for node_id, node in nodes if matches(node)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listing = "\n".join(f"  {_describe_node(i, prompt[i])}" for i in found)
            raise OverrideError(
                f"{flag}: '{ref}' matches {len(found)} nodes:\n{listing}",
                hint="name the node by its id instead",
            )
    listing = "\n".join(f"  {_describe_node(i, n)}" for i, n in nodes)
    raise OverrideError(
        f"{flag}: no node '{ref}' in the workflow; its nodes are:\n{listing}",
        hint="NODE is a node id, a title (_meta.title) or a class name",
    )


def _spec(catalog: NodeCatalog | None, class_type: Any, name: str) -> InputSpec | None:
    if catalog is None or not isinstance(class_type, str) or class_type not in catalog:
        return None
    return catalog[class_type].inputs.get(name)


def _check_input(
    prompt: Mapping[str, Any], catalog: NodeCatalog | None, node_id: str, name: str, flag: str
) -> InputSpec | None:
    node = prompt[node_id]
    inputs = node.get("inputs") or {}
    spec = _spec(catalog, node.get("class_type"), name)
    if name in inputs or (spec is not None and spec.section != "hidden"):
        return spec
    known = list(inputs)
    class_type = node.get("class_type")
    if catalog is not None and isinstance(class_type, str) and class_type in catalog:
        known += [s.name for s in catalog[class_type].visible_inputs() if s.name not in known]
    raise OverrideError(
        f"{flag}: node {_describe_node(node_id, node)} has no input '{name}'; "
        f"its inputs are: {', '.join(known) or 'none'}"
    )


def parse_value(text: str) -> tuple[Any, bool]:
    """(value, was_json): JSON when `text` parses as JSON, else the text itself."""
    try:
        return json.loads(text), True
    except ValueError:
        return text, False


def coerce(text: str, spec: InputSpec | None, *, where: str, class_type: str = "") -> Any:
    """The value `text` stands for, in the type `spec` asks for."""
    value, was_json = parse_value(text)
    if is_link(value):
        return value
    as_text = value if was_json and isinstance(value, str) else text
    kind = spec.type if spec is not None else None
    if kind == "INT":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise OverrideError(f"{where}: expects a whole number (INT), got {text!r}")
    if kind == "FLOAT":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise OverrideError(f"{where}: expects a number (FLOAT), got {text!r}")
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        lowered = as_text.strip().lower() if isinstance(as_text, str) else ""
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise OverrideError(f"{where}: expects true or false (BOOLEAN), got {text!r}")
    if kind == "STRING":
        return as_text
    if kind == "COMBO" and spec is not None:
        return _combo(value, as_text, spec, where, class_type)
    if spec is not None and kind not in (None, "*") and not spec.is_widget:
        raise OverrideError(
            f"{where}: takes a link from another node ({kind}), not a value",
            hint='a link is written ["NODE_ID", OUTPUT_INDEX]',
        )
    if isinstance(value, list):
        return {"__value__": value}  # ComfyUI reads a bare list as a link
    return value if was_json else text


def _combo(value: Any, as_text: Any, spec: InputSpec, where: str, class_type: str) -> Any:
    choices = list(spec.choices or ())
    for candidate in (value, as_text):
        if candidate in choices:
            return candidate
    # Model and upload lists come from one server; another may well have the file.
    if (
        not choices
        or is_model_input(class_type, spec.name, spec)
        or file_input_kind(class_type, spec.name, spec)
    ):
        return as_text
    shown = ", ".join(repr(c) for c in choices[:20]) + (" ..." if len(choices) > 20 else "")
    raise OverrideError(f"{where}: {as_text!r} is not one of: {shown}")


def apply_overrides(
    prompt: Mapping[str, Any], catalog: NodeCatalog | None, sets: Sequence[str]
) -> tuple[dict[str, Any], list[Change]]:
    """A copy of `prompt` with every `NODE.INPUT=VALUE` of `sets` applied, and what changed."""
    out: dict[str, Any] = copy.deepcopy(dict(prompt))
    changes: list[Change] = []
    for spec_text in sets:
        ref, name, text = split_spec(spec_text)
        node_id = resolve_node(out, ref)
        spec = _check_input(out, catalog, node_id, name, "--set")
        where = f"--set {node_id}.{name}"
        new = coerce(text, spec, where=where, class_type=str(out[node_id].get("class_type", "")))
        if is_link(new) and new[0] not in out:
            raise OverrideError(f"{where}: link source node {new[0]!r} is not in the workflow")
        changes.append(_set(out, node_id, name, new))
    return out, changes


def _set(prompt: dict[str, Any], node_id: str, name: str, new: Any) -> Change:
    node = prompt[node_id]
    inputs = node.setdefault("inputs", {})
    old = inputs.get(name)
    inputs[name] = new
    return Change(
        node_id,
        str(node.get("class_type", "")),
        name,
        old,
        new,
        replaced_link=isinstance(old, list) and not is_link(new),
        title=node_title(node),
    )


def parse_inputs(specs: Sequence[str]) -> list[InputFile]:
    """`--input NODE.INPUT=PATH` values; each path must be an existing file."""
    files: list[InputFile] = []
    for text in specs:
        node, name, raw_path = split_spec(text, flag="--input")
        path = Path(_unquote(raw_path)).expanduser()
        if not path.exists():
            raise OverrideError(f"--input {text!r}: {path} does not exist")
        if not path.is_file():
            raise OverrideError(f"--input {text!r}: {path} is not a file")
        files.append(InputFile(node, name, path))
    return files


def input_target(
    prompt: Mapping[str, Any], catalog: NodeCatalog | None, item: InputFile
) -> tuple[str, str]:
    """(node id, input name) an `--input` sets; raises OverrideError when it names nothing."""
    node_id = resolve_node(prompt, item.node, flag="--input")
    _check_input(prompt, catalog, node_id, item.input, "--input")
    return node_id, item.input


def apply_uploads(
    prompt: Mapping[str, Any],
    catalog: NodeCatalog | None,
    files: Sequence[InputFile],
    uploaded: Mapping[tuple[str, str], str],
) -> tuple[dict[str, Any], list[Change]]:
    """A copy of `prompt` whose file inputs name the uploaded files.

    `uploaded` maps `(item.node, item.input)` of each InputFile to the name the server gave
    it (e.g. `"photo (1).png"` or `"sub/photo.png"`).
    """
    out: dict[str, Any] = copy.deepcopy(dict(prompt))
    changes = []
    for item in files:
        name = uploaded.get((item.node, item.input))
        if name is None:
            raise OverrideError(f"--input {item.node}.{item.input}: {item.path} was not uploaded")
        node_id, input_name = input_target(out, catalog, item)
        changes.append(_set(out, node_id, input_name, name))
    return out, changes
