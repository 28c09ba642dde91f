"""What a workflow needs, listed offline: node classes, model files, input files.

From an API-format prompt (with a node catalog when there is one) and from the `models`
metadata UI-format workflows carry (`nodes[].properties.models`, also inside subgraphs):
`[{name, url, directory, hash?, hash_type?}]`. Everything is sorted so the same workflow
always lists the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from comfyfleet.graph.custom import FILE_INPUT_NODES, split_annotation
from comfyfleet.graph.input_files import file_input_kind
from comfyfleet.graph.model_folders import (
    MODEL_INPUTS,
    NON_FILE_OPTIONS,
    canonical_folder,
    guess_folder,
    is_model_input,
    looks_like_model_file,
    model_folder_for,
)
from comfyfleet.graph.prompt import is_link
from comfyfleet.models.nodes import NodeCatalog

#: Folder key used when a model input's folder cannot be known.
UNKNOWN_FOLDER = "unknown"

# ComfyUI's tokenizer takes `embedding:NAME` at the start of a segment, after a space, a newline
# or an opening parenthesis; NAME runs to the next space; commas and a `:weight` are not part of it.
_EMBEDDING = re.compile(r"(?:^|(?<=[\s(]))embedding:([^\s()]+)")
_WEIGHT = re.compile(r":-?\d+(?:\.\d+)?$")

# Frontend-only node types: they never reach the server.
_VIRTUAL_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


@dataclass(frozen=True)
class NodeUse:
    """A node class and the nodes of the workflow that use it."""

    class_type: str
    node_ids: tuple[str, ...]
    known: bool | None = None  # in the catalog? None when there was no catalog


@dataclass(frozen=True)
class ModelFile:
    """A model file the workflow loads."""

    folder: str  # folder key (`checkpoints`, `loras`, ...) or UNKNOWN_FOLDER
    name: str  # as the workflow names it, relative to the folder
    node_ids: tuple[str, ...] = ()
    url: str | None = None  # from the UI metadata, when the author gave one
    hash: str | None = None
    hash_type: str | None = None

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"


@dataclass(frozen=True)
class InputFileUse:
    """A file the workflow reads from the server's input folder."""

    name: str
    kind: str  # image, video, audio, latent, 3d, file
    node_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkflowDeps:
    """Everything a workflow needs from the server that runs it."""

    nodes: tuple[NodeUse, ...] = ()
    models: tuple[ModelFile, ...] = ()
    inputs: tuple[InputFileUse, ...] = ()
    checked_catalog: bool = False

    @property
    def missing_nodes(self) -> list[str]:
        return [n.class_type for n in self.nodes if n.known is False]

    def models_by_folder(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for model in self.models:
            out.setdefault(model.folder, []).append(model.name)
        return out

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nodes": {n.class_type: len(n.node_ids) for n in self.nodes},
            "models": self.models_by_folder(),
            "inputs": [i.name for i in self.inputs],
            "urls": {m.path: m.url for m in self.models if m.url},
        }
        if self.checked_catalog:
            data["missing_nodes"] = self.missing_nodes
        return data

    def merge(self, other: WorkflowDeps) -> WorkflowDeps:
        return _build(
            ((u.class_type, i, u.known) for u in (*self.nodes, *other.nodes) for i in u.node_ids),
            (*self.models, *other.models),
            (*self.inputs, *other.inputs),
            self.checked_catalog or other.checked_catalog,
        )


def _sorted_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Node ids in natural order ("2" < "10" < "106:87")."""

    def key(node_id: str) -> list[tuple[int, Any]]:
        return [(0, int(p)) if p.isdigit() else (1, p) for p in node_id.split(":")]

    return tuple(sorted(set(ids), key=key))


def _build(
    node_uses: Iterable[tuple[str, str, bool | None]],
    models: Iterable[ModelFile],
    inputs: Iterable[InputFileUse],
    checked: bool,
) -> WorkflowDeps:
    classes: dict[str, tuple[list[str], bool | None]] = {}
    for class_type, node_id, known in node_uses:
        ids, was = classes.setdefault(class_type, ([], known))
        ids.append(node_id)
        if was is None and known is not None:
            classes[class_type] = (ids, known)
    merged: dict[tuple[str, str], ModelFile] = {}
    for m in models:
        prev = merged.get((m.folder, m.name))
        if prev is None:
            merged[(m.folder, m.name)] = m
            continue
        merged[(m.folder, m.name)] = ModelFile(
            m.folder,
            m.name,
            _sorted_ids((*prev.node_ids, *m.node_ids)),
            prev.url or m.url,
            prev.hash or m.hash,
            prev.hash_type or m.hash_type,
        )
    files: dict[tuple[str, str], list[str]] = {}
    for f in inputs:
        files.setdefault((f.name, f.kind), []).extend(f.node_ids)
    return WorkflowDeps(
        nodes=tuple(
            NodeUse(c, _sorted_ids(ids), known) for c, (ids, known) in sorted(classes.items())
        ),
        models=tuple(
            ModelFile(m.folder, m.name, _sorted_ids(m.node_ids), m.url, m.hash, m.hash_type)
            for _, m in sorted(merged.items())
        ),
        inputs=tuple(
            InputFileUse(name, kind, _sorted_ids(ids))
            for (name, kind), ids in sorted(files.items())
        ),
        checked_catalog=checked,
    )


def embeddings_in(text: str) -> list[str]:
    """Embedding names referenced as `embedding:NAME` in prompt text."""
    names = []
    for match in _EMBEDDING.finditer(text):
        name = _WEIGHT.sub("", match.group(1)).rstrip(",.;")
        if name:
            names.append(name)
    return names


def _prompt_values(node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    inputs = node.get("inputs")
    if not isinstance(inputs, Mapping):
        return
    for name, value in inputs.items():
        if isinstance(value, Mapping) and "__value__" in value:
            value = value["__value__"]
        if not is_link(value):
            yield str(name), value


def _model_of(class_type: str, name: str, value: Any, catalog: NodeCatalog | None) -> str | None:
    """The folder of the model `class_type.name = value` loads (UNKNOWN_FOLDER if unknown).

    None when the input is not a model input."""
    if not isinstance(value, str) or not value or value in NON_FILE_OPTIONS:
        return None
    spec = None
    if catalog is not None and class_type in catalog:
        spec = catalog[class_type].inputs.get(name)
        if not is_model_input(class_type, name, spec):
            return None
        return model_folder_for(class_type, name, spec) or UNKNOWN_FOLDER
    if class_type in MODEL_INPUTS:
        return MODEL_INPUTS[class_type].get(name)
    if name.lower().endswith(("_name", "_file", "_path")) and looks_like_model_file(value):
        return guess_folder(name) or UNKNOWN_FOLDER
    return None


def deps_of_prompt(prompt: Mapping[str, Any], catalog: NodeCatalog | None = None) -> WorkflowDeps:
    """Node classes, model files per folder, embeddings and input files of an API prompt."""
    uses: list[tuple[str, str, bool | None]] = []
    models: list[ModelFile] = []
    files: list[InputFileUse] = []
    for raw_id, node in prompt.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            continue
        node_id, class_type = str(raw_id), node["class_type"]
        known = None if catalog is None else class_type in catalog
        uses.append((class_type, node_id, known))
        for name, value in _prompt_values(node):
            spec = catalog[class_type].inputs.get(name) if catalog is not None and known else None
            kind = file_input_kind(class_type, name, spec)
            if kind is not None:
                name, folder = split_annotation(value) if isinstance(value, str) else ("", None)
                if name and folder in (None, "input"):  # output/temp files are the server's own
                    files.append(InputFileUse(name, kind, (node_id,)))
                continue
            folder = _model_of(class_type, name, value, catalog)
            if folder is not None:
                models.append(ModelFile(folder, value, (node_id,)))
            elif isinstance(value, str):
                models += [ModelFile("embeddings", e, (node_id,)) for e in embeddings_in(value)]
    return _build(uses, models, files, catalog is not None)


def _subgraph_prefixes(ui: Mapping[str, Any]) -> dict[str, list[str]]:
    """subgraph id -> id prefixes of its instances (`"106"`, nested: `"106:12"`)."""
    subgraphs = {
        str(sg.get("id")): sg
        for sg in (ui.get("definitions") or {}).get("subgraphs") or []
        if isinstance(sg, Mapping)
    }
    prefixes: dict[str, list[str]] = {}
    pending = [("", node) for node in ui.get("nodes") or [] if isinstance(node, Mapping)]
    while pending:
        parent, node = pending.pop()
        sg = subgraphs.get(str(node.get("type")))
        if sg is None or node.get("mode") in (2, 4):
            continue
        prefix = f"{parent}{node.get('id')}"
        if prefix.count(":") > 16:
            continue  # a subgraph that contains itself
        prefixes.setdefault(str(sg.get("id")), []).append(prefix)
        pending += [
            (f"{prefix}:", inner) for inner in sg.get("nodes") or [] if isinstance(inner, Mapping)
        ]
    return prefixes


def _ui_nodes(ui: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(API-style id, node) for every node of a UI workflow that reaches the server."""
    subgraphs = {str(sg.get("id")) for sg in (ui.get("definitions") or {}).get("subgraphs") or []}
    prefixes = _subgraph_prefixes(ui)
    graphs: list[tuple[list[str], Any]] = [([""], ui.get("nodes"))]
    for sg in (ui.get("definitions") or {}).get("subgraphs") or []:
        ids = [f"{p}:" for p in prefixes.get(str(sg.get("id")), [])]
        graphs.append((ids, sg.get("nodes")))
    for ids, nodes in graphs:
        for node in nodes or []:
            if not isinstance(node, Mapping) or node.get("mode") in (2, 4):
                continue
            if node.get("type") in _VIRTUAL_TYPES or str(node.get("type")) in subgraphs:
                continue
            for prefix in ids:
                yield f"{prefix}{node.get('id')}", node


def models_from_ui(ui: Mapping[str, Any]) -> list[ModelFile]:
    """Model files named by the `models` metadata of a UI workflow's nodes.

    Muted and bypassed nodes do not count, nor entries whose file the node no longer selects
    (the metadata outlives a changed widget).
    """
    out: list[ModelFile] = []
    for node_id, node in _ui_nodes(ui):
        widgets = node.get("widgets_values")
        values = list(widgets.values()) if isinstance(widgets, Mapping) else list(widgets or [])
        for entry in (node.get("properties") or {}).get("models") or []:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                continue
            if entry["name"] not in values:
                continue
            out.append(_model_entry(entry, (node_id,)))
    for entry in ui.get("models") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            out.append(_model_entry(entry, ()))
    return out


def _model_entry(entry: Mapping[str, Any], node_ids: tuple[str, ...]) -> ModelFile:
    def text(key: str) -> str | None:
        value = entry.get(key)
        return value if isinstance(value, str) and value else None

    directory = text("directory")
    folder = canonical_folder(directory) if directory else UNKNOWN_FOLDER
    return ModelFile(folder, entry["name"], node_ids, text("url"), text("hash"), text("hash_type"))


def deps_of_ui(ui: Mapping[str, Any]) -> WorkflowDeps:
    """What a UI workflow needs, read without converting it (no catalog at hand)."""
    uses: list[tuple[str, str, bool | None]] = []
    models = models_from_ui(ui)
    files: list[InputFileUse] = []
    for node_id, node in _ui_nodes(ui):
        class_type = str(node.get("type"))
        uses.append((class_type, node_id, None))
        widgets = node.get("widgets_values")
        values = list(widgets.values()) if isinstance(widgets, Mapping) else list(widgets or [])
        strings = [v for v in values if isinstance(v, str) and v]
        known = MODEL_INPUTS.get(class_type, {})
        stock = FILE_INPUT_NODES.get(class_type)
        kind = file_input_kind(class_type, stock[0], None) if stock else None
        if kind is not None and strings:
            files.append(InputFileUse(strings[0], kind, (node_id,)))
            continue
        for value in strings:
            if known and looks_like_model_file(value):
                folders = set(known.values())
                folder = "configs" if value.endswith(".yaml") and "configs" in folders else None
                folder = folder or next(iter(sorted(folders - {"configs"})), UNKNOWN_FOLDER)
                models.append(ModelFile(folder, value, (node_id,)))
            else:
                models += [ModelFile("embeddings", e, (node_id,)) for e in embeddings_in(value)]
    return _build(uses, models, files, False)


class _Loaded(Protocol):
    @property
    def format(self) -> str: ...

    @property
    def api(self) -> Mapping[str, Any] | None: ...

    @property
    def ui(self) -> Mapping[str, Any] | None: ...


def deps_of_workflow(loaded: _Loaded, catalog: NodeCatalog | None = None) -> WorkflowDeps:
    """What a loaded workflow needs. A UI workflow is converted when there is a catalog (its
    metadata adds download URLs); without one, it is read as it is."""
    if loaded.api is not None and loaded.format == "api":
        return deps_of_prompt(loaded.api, catalog)
    ui = loaded.ui or {}
    if catalog is None:
        return deps_of_ui(ui)
    from comfyfleet.comfy.workflow.convert import ui_to_api

    prompt_deps = deps_of_prompt(ui_to_api(ui, catalog), catalog)
    used = {(m.folder, m.name) for m in prompt_deps.models}
    meta = [m for m in models_from_ui(ui) if (m.folder, m.name) in used]
    return prompt_deps.merge(WorkflowDeps(models=tuple(meta)))
