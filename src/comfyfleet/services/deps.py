"""What a workflow needs, what a target lacks of it, and where each missing piece comes from.

`workflow_needs(path, target=..., settings=...)` reads the workflow's node classes and model
files (`comfy.workflow.deps`), compares them with a live target (its /object_info and its
`/models/{folder}` listings) or a saved /object_info, and asks the catalogs which node pack
provides each missing class and where each missing file can be downloaded from.

Statuses: a node class is `present` or `missing` on the target; without one it is `core`
(ships with ComfyUI) or `needed`. A model file is `present`, `missing`, or `needed` (no
target to look at). Something is *blocking* when the target lacks it and nothing settles
how to get it: an unknown class, an ambiguous one without `--pack`, a core class of a
newer ComfyUI, a file without a usable source.
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from comfyfleet.catalog import (
    Catalogs,
    ModelResolution,
    ModelSource,
    NodeResolution,
    PackHint,
    Provenance,
    WantedModel,
)
from comfyfleet.comfy.client import ComfyClient
from comfyfleet.comfy.workflow.deps import (
    UNKNOWN_FOLDER,
    ModelFile,
    NodeUse,
    WorkflowDeps,
    _ui_nodes,  # the same walk over UI nodes (subgraphs, muted nodes) the listing uses
    deps_of_workflow,
)
from comfyfleet.comfy.workflow.load import LoadedWorkflow, load_workflow
from comfyfleet.config import Settings
from comfyfleet.errors import ComfyNotFound, ConversionError, UsageError
from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.services.targets import Target
from comfyfleet.services.workflows import load_object_info_file

NodeStatus = Literal["present", "missing", "needed", "core"]
ModelStatus = Literal["present", "missing", "needed"]
# ComfyUI finds `embedding:NAME` with or without the file's extension.
_EMBEDDING_EXTS = (".safetensors", ".pt", ".bin", ".pth", ".ckpt")


@dataclass(frozen=True)
class NodeNeed:
    """A node class the workflow uses, its status, and (unless present) its packs."""

    use: NodeUse
    status: NodeStatus
    resolution: NodeResolution | None = None

    @property
    def class_type(self) -> str:
        return self.use.class_type

    @property
    def blocking(self) -> bool:
        lacking = self.status in ("missing", "needed")
        return lacking and (self.resolution is None or not self.resolution.resolved)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "class": self.class_type,
            "node_ids": list(self.use.node_ids),
            "status": self.status,
        }
        if self.resolution is not None:
            data.update(self.resolution.to_json())
        return data


@dataclass(frozen=True)
class ModelNeed:
    """A model file the workflow loads, its status, and (unless present) its sources."""

    file: ModelFile
    status: ModelStatus
    resolution: ModelResolution | None = None
    present_as: tuple[str, ...] = ()  # the same file name elsewhere in the target's folder

    @property
    def sources(self) -> tuple[ModelSource, ...]:
        return self.resolution.sources if self.resolution is not None else ()

    @property
    def blocking(self) -> bool:
        return self.status in ("missing", "needed") and not self.sources

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.file.folder,
            "name": self.file.name,
            "node_ids": list(self.file.node_ids),
            "status": self.status,
            "present_as": list(self.present_as),
            "sources": [s.to_json() for s in self.sources],
            "problems": list(self.resolution.problems) if self.resolution else [],
        }


@dataclass(frozen=True)
class WorkflowNeeds:
    """Everything `comfyfleet workflow deps` reports."""

    workflow: str
    deps: WorkflowDeps
    nodes: tuple[NodeNeed, ...]
    models: tuple[ModelNeed, ...]
    target: Target | None = None
    checked_nodes: bool = False  # node classes compared with a server's /object_info
    checked_models: bool = False  # model files compared with a live server's folders
    choices: Mapping[str, str] = field(default_factory=dict)
    catalogs: Mapping[str, Provenance] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def missing_nodes(self) -> list[NodeNeed]:
        return [n for n in self.nodes if n.status in ("missing", "needed")]

    @property
    def missing_models(self) -> list[ModelNeed]:
        return [m for m in self.models if m.status in ("missing", "needed")]

    @property
    def unsettled(self) -> bool:
        """Something lacking (or needed, without a target) that no catalog settles."""
        return any(n.blocking for n in self.nodes) or any(m.blocking for m in self.models)

    @property
    def blocking(self) -> bool:
        """A target was checked and lacks something no catalog settles (exit code 3)."""
        nodes = self.checked_nodes and any(n.blocking for n in self.nodes)
        return nodes or (self.checked_models and any(m.blocking for m in self.models))

    @property
    def packs(self) -> list[str]:
        """Ids of the packs to install, once each, in class order."""
        chosen = [n.resolution.chosen for n in self.missing_nodes if n.resolution]
        return list(dict.fromkeys(c.pack.id for c in chosen if c is not None))

    def next_commands(self) -> list[str]:
        """The commands that make the target ready (ID when there is no instance): `prepare`
        when everything is settled, and the step-by-step installs of what is."""
        if not self.missing_nodes and not self.missing_models:
            return []
        ref = shlex.quote(self.target.name) if self.target and self.target.name else "ID"
        flow = shlex.quote(self.workflow)
        picks = "".join(f" --pack {shlex.quote(f'{c}={p}')}" for c, p in self.choices.items())
        lines = [] if self.unsettled else [f"comfyfleet prepare {flow} {ref}{picks}"]
        lines += [f"comfyfleet nodes install {ref} {shlex.quote(p)}" for p in self.packs]
        for model in self.missing_models:
            if model.sources:
                lines.append(_pull_command(ref, model.sources[0]))
        return lines

    def to_json(self) -> dict[str, Any]:
        data = self.deps.to_json()
        data.update(
            {
                "workflow": self.workflow,
                "target": self.target.display if self.target else None,
                "checked": {"nodes": self.checked_nodes, "models": self.checked_models},
                "node_classes": [n.to_json() for n in self.nodes],
                "model_files": [m.to_json() for m in self.models],
                "missing": {
                    "nodes": [n.class_type for n in self.missing_nodes],
                    "models": [m.file.path for m in self.missing_models],
                },
                "unresolved": {
                    "nodes": [n.class_type for n in self.nodes if n.blocking],
                    "models": [m.file.path for m in self.models if m.blocking],
                },
                "packs": self.packs,
                "next": self.next_commands(),
                "catalogs": {k: v.to_json() for k, v in self.catalogs.items()},
                "warnings": list(self.warnings),
                "ok": not self.blocking,
            }
        )
        return data


def _pull_command(ref: str, source: ModelSource) -> str:
    words = ["comfyfleet", "models", "pull", ref, shlex.quote(source.spec)]
    words += ["--folder", shlex.quote(source.folder)]
    if posixpath.basename(source.filename) != posixpath.basename(source.url.split("?")[0]):
        words += ["--name", shlex.quote(source.filename)]
    if source.sha256:
        words += ["--sha256", source.sha256]
    return " ".join(words)


def pack_hints(loaded: LoadedWorkflow) -> dict[str, PackHint]:
    """What a UI workflow recorded about each class's pack (`properties` cnr_id/aux_id/ver)."""
    hints: dict[str, PackHint] = {}
    for _, node in _ui_nodes(loaded.ui or {}):
        props = node.get("properties")
        if not isinstance(props, Mapping):
            continue
        cnr, aux, ver = (props.get(k) for k in ("cnr_id", "aux_id", "ver"))
        if not isinstance(cnr, str) and not isinstance(aux, str):
            continue
        hints.setdefault(
            str(node.get("type")),
            PackHint(
                cnr if isinstance(cnr, str) else None,
                aux if isinstance(aux, str) else None,
                str(ver) if isinstance(ver, str | int | float) else None,
            ),
        )
    return hints


def parse_pack_choices(items: Sequence[str]) -> dict[str, str]:
    """`--pack CLASS=PACK` values -> {class: pack}; a malformed one is a UsageError."""
    choices: dict[str, str] = {}
    for item in items:
        cls, sep, pack = item.partition("=")
        if not sep or not cls.strip() or not pack.strip():
            raise UsageError(
                f"--pack {item!r} is not CLASS=PACK",
                hint="e.g. --pack PromptBuilder=ComfyUI-WildPromptor (quote names with spaces)",
            )
        choices[cls.strip()] = pack.strip()
    return choices


def _deps(loaded: LoadedWorkflow, catalog: NodeCatalog | None) -> WorkflowDeps:
    try:
        return deps_of_workflow(loaded, catalog)
    except ConversionError:
        # a UI workflow with classes the server lacks cannot be converted: read it as it is
        return deps_of_workflow(loaded, None)


async def _listings(client: ComfyClient, folders: set[str]) -> dict[str, list[str] | None]:
    """The files of each folder on the server (None: it has no such folder)."""
    if UNKNOWN_FOLDER in folders:
        folders = (folders - {UNKNOWN_FOLDER}) | set(await client.models())

    async def listing(folder: str) -> list[str] | None:
        try:
            return [n.replace("\\", "/") for n in await client.model_files(folder)]
        except ComfyNotFound:
            return None  # a folder a custom node pack adds, not installed yet

    names = sorted(folders)
    return dict(zip(names, await asyncio.gather(*(listing(f) for f in names)), strict=True))


def _model_status(
    model: ModelFile, listings: Mapping[str, list[str] | None]
) -> tuple[ModelStatus, tuple[str, ...]]:
    name = model.name.replace("\\", "/")
    folders = list(listings) if model.folder == UNKNOWN_FOLDER else [model.folder]
    wanted = {name}
    if model.folder == "embeddings" and not name.lower().endswith(_EMBEDDING_EXTS):
        wanted |= {name + ext for ext in _EMBEDDING_EXTS}
    base = posixpath.basename(name)
    similar: list[str] = []
    for folder in folders:
        files = listings.get(folder) or []
        if wanted & set(files):
            return "present", ()
        similar += [f for f in files if posixpath.basename(f) == base]
    return "missing", tuple(similar)


async def workflow_needs(
    path: Path,
    *,
    target: Target | None,
    settings: Settings,
    object_info: Path | None = None,
    choices: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WorkflowNeeds:
    """What `path` needs, checked against `target` (or a saved `object_info`), resolved.

    `choices` (class -> pack) settle ambiguous classes; `transport` reaches the catalogs.
    """
    loaded = load_workflow(path)
    choices = dict(choices or {})
    listings: dict[str, list[str] | None] = {}
    catalog: NodeCatalog | None = None
    if target is not None:
        async with ComfyClient(target.url, token=target.token, settings=settings.comfy) as client:
            catalog = await client.object_info()
            deps = _deps(loaded, catalog)
            listings = await _listings(client, {m.folder for m in deps.models})
    else:
        catalog = load_object_info_file(object_info) if object_info is not None else None
        deps = _deps(loaded, catalog)
    unknown = set(choices) - {n.class_type for n in deps.nodes}
    if unknown:
        raise UsageError(
            f"--pack names {', '.join(sorted(unknown))}, which the workflow does not use",
            hint="give CLASS=PACK for a class the workflow lists",
        )
    hints = pack_hints(loaded)
    async with Catalogs(settings, transport=transport) as catalogs:
        index = await catalogs.nodes()
        statuses: dict[str, NodeStatus] = {}
        for use in deps.nodes:
            if catalog is not None:
                statuses[use.class_type] = "present" if use.class_type in catalog else "missing"
            else:
                hint = hints.get(use.class_type)
                core = index.is_core(use.class_type) or (hint is not None and hint.core)
                statuses[use.class_type] = "core" if core else "needed"
        lacking = [c for c, s in statuses.items() if s in ("missing", "needed")]
        resolutions = await catalogs.resolve_nodes(lacking, hints, choices)
        model_states = {
            (m.folder, m.name): _model_status(m, listings) if target else ("needed", ())
            for m in deps.models
        }
        wanted = [
            WantedModel(m.folder, m.name, m.url, m.hash, m.hash_type)
            for m in deps.models
            if model_states[(m.folder, m.name)][0] != "present"
        ]
        found = {(r.folder, r.name): r for r in await catalogs.resolve_models(wanted)}
        warnings = tuple(catalogs.warnings)
        provenance = dict(catalogs.provenance)
    nodes = tuple(
        NodeNeed(u, statuses[u.class_type], resolutions.get(u.class_type)) for u in deps.nodes
    )
    models = []
    for m in deps.models:
        status, similar = model_states[(m.folder, m.name)]
        models.append(ModelNeed(m, status, found.get((m.folder, m.name)), similar))
    return WorkflowNeeds(
        workflow=str(path),
        deps=deps,
        nodes=nodes,
        models=tuple(models),
        target=target,
        checked_nodes=catalog is not None,
        checked_models=target is not None,
        choices=choices,
        catalogs=provenance,
        warnings=warnings,
    )
