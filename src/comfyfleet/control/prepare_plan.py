"""What `prepare` does to make an instance run a workflow, decided from what it lacks.

    plan = plan_prepare(classes, files, git_installs=GIT_INSTALLS)
    plan.packs        # packs to install, once each, with the classes they bring
    plan.models       # files to pull, with their sources in order of preference
    plan.unresolved   # what nothing settles: the item, why, and the way out

A class the instance has, or a file it has, needs nothing. A missing class is installed from
the git URL the user gave for it (`--pack CLASS=URL`), else from the pack the catalogs chose;
it is unresolved when it ships with ComfyUI itself (a newer one), when several packs provide
it and none was chosen, when no catalog knows it, or when its pack is not a git repository
(ComfyUI-Manager's copy/unzip installs). A missing file is pulled from its sources, or is
unresolved without one. Nothing here talks to anything: the service runs the plan.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from comfyfleet.catalog import ModelSource, NodeResolution
from comfyfleet.catalog.packs import normalize_repo

Reason = Literal[
    "core",  # a class of a newer ComfyUI
    "ambiguous",  # several packs provide it, none chosen
    "unknown",  # no catalog knows it
    "not-git",  # its pack is installed by copying files
    "no-source",  # a model file nobody says where to download
    "refused",  # the torch guard refused the pack's requirements
    "failed",  # an install or a pull failed
    "import-failed",  # ComfyUI did not load the pack
    "invalid",  # ComfyUI would still refuse the workflow
]
Kind = Literal["node", "pack", "model", "workflow"]


@dataclass(frozen=True)
class ClassNeed:
    """A node class the workflow uses and what the catalogs say of it."""

    class_type: str
    present: bool
    resolution: NodeResolution | None = None
    direct: str | None = None  # a git URL given with `--pack CLASS=URL`


@dataclass(frozen=True)
class FileNeed:
    """A model file the workflow loads and where it can come from."""

    folder: str
    name: str
    present: bool
    sources: tuple[ModelSource, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"


@dataclass(frozen=True)
class PackStep:
    """A pack to install: what `install_pack` gets, how it is shown, the classes it brings."""

    source: str  # a git URL
    label: str  # the catalog id, or the URL's last segment
    classes: tuple[str, ...]
    recorded_version: str | None = None  # what the workflow recorded for the pack

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pack": self.label,
            "classes": list(self.classes),
            "recorded_version": self.recorded_version,
        }


@dataclass(frozen=True)
class ModelStep:
    folder: str
    name: str
    sources: tuple[ModelSource, ...]

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.name}"


@dataclass(frozen=True)
class Unresolved:
    """Something that keeps the workflow from running, why, and what to do."""

    kind: Kind
    item: str
    reason: Reason
    detail: str = ""
    fix: str | None = None
    log_lines: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "item": self.item,
            "reason": self.reason,
            "detail": self.detail,
            "fix": self.fix,
            "log_lines": list(self.log_lines),
        }


@dataclass(frozen=True)
class PreparePlan:
    packs: tuple[PackStep, ...] = ()
    models: tuple[ModelStep, ...] = ()
    unresolved: tuple[Unresolved, ...] = ()
    present_models: tuple[str, ...] = ()  # folder/name of the files already there

    @property
    def empty(self) -> bool:
        return not self.packs and not self.models


def _last_segment(url: str) -> str:
    tail = url.rstrip("/").replace(":", "/").split("/")[-1]
    return tail.removesuffix(".git") or url


def _unresolved_class(need: ClassNeed) -> Unresolved:
    res, cls = need.resolution, need.class_type
    if res is not None and res.core:
        return Unresolved(
            "node",
            cls,
            "core",
            "ships with ComfyUI itself: the instance runs an older ComfyUI",
            "update ComfyUI on the instance, or rent one with a newer image",
        )
    if res is not None and res.ambiguous:
        listed = ", ".join(f"{c.pack.id} ({c.pack.repo})" for c in res.candidates)
        return Unresolved(
            "node", cls, "ambiguous", f"several packs provide it: {listed}", res.choose_hint()
        )
    return Unresolved(
        "node",
        cls,
        "unknown",
        "no catalog knows which pack provides it",
        f"--pack {cls}=GIT_URL (the repository of the pack that has it)",
    )


def plan_prepare(
    classes: Sequence[ClassNeed],
    files: Sequence[FileNeed],
    *,
    git_installs: Collection[str],
) -> PreparePlan:
    """The plan for an instance lacking some of `classes` and `files` (module docstring)."""
    packs: dict[str, PackStep] = {}  # normalized repository -> step, in class order
    unresolved: list[Unresolved] = []
    refused: dict[str, list[str]] = {}  # pack id -> classes, for packs that are no git repo
    for need in classes:
        if need.present:
            continue
        source, label, version = need.direct, None, None
        chosen = need.resolution.chosen if need.resolution is not None else None
        if source is None and chosen is not None:
            if chosen.pack.install_type not in git_installs:
                refused.setdefault(chosen.pack.id, []).append(need.class_type)
                continue
            source, label, version = chosen.pack.repo, chosen.pack.id, chosen.version
        if source is None:
            unresolved.append(_unresolved_class(need))
            continue
        key = normalize_repo(source)
        step = packs.get(key)
        if step is None:
            packs[key] = PackStep(
                source, label or _last_segment(source), (need.class_type,), version
            )
        else:
            packs[key] = PackStep(
                step.source, step.label, (*step.classes, need.class_type), step.recorded_version
            )
    for pack_id, names in refused.items():
        unresolved.append(
            Unresolved(
                "pack",
                pack_id,
                "not-git",
                f"installed by copying files, not from a git repository (for {', '.join(names)})",
                "copy its files into custom_nodes yourself (comfyfleet exec), or give a git URL "
                f"with --pack {names[0]}=GIT_URL",
            )
        )
    models: list[ModelStep] = []
    present: list[str] = []
    for file in files:
        if file.present:
            present.append(file.path)
        elif file.sources:
            models.append(ModelStep(file.folder, file.name, file.sources))
        else:
            why = "; ".join(file.problems) or "no catalog, manifest or workflow URL names it"
            unresolved.append(
                Unresolved(
                    "model",
                    file.path,
                    "no-source",
                    why,
                    f"pull it yourself: comfyfleet models pull ID SOURCE --folder {file.folder} "
                    f"--name {file.name}, or add it to your models manifest",
                )
            )
    return PreparePlan(tuple(packs.values()), tuple(models), tuple(unresolved), tuple(present))
