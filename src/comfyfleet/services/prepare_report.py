"""What `prepare` did and what it could not settle, as typed values (and JSON for scripts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from comfyfleet.control.prepare_plan import Unresolved
from comfyfleet.services.nodes import RESTART_DEFERRED_NOTE, InstallResult

#: present: ComfyUI listed it before; downloaded: pulled now; kept: found in place by the pull
ModelStatus = Literal["present", "downloaded", "kept"]
EXIT_NOT_RUNNABLE = 3  # as `workflow deps` and `validate`: the workflow would be refused


@dataclass(frozen=True)
class PackDone:
    """A pack prepare installed (or found installed) and the classes ComfyUI loaded of it."""

    pack: str
    url: str
    commit: str
    status: str  # installed, updated, already-installed
    classes: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: InstallResult, classes: tuple[str, ...]) -> PackDone:
        notes = tuple(n for n in result.notes if n != RESTART_DEFERRED_NOTE)
        return cls(
            result.pack,
            result.url,
            result.commit,
            result.status,
            classes,
            result.requirements,
            notes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "url": self.url,
            "commit": self.commit,
            "status": self.status,
            "classes": list(self.classes),
            "requirements": list(self.requirements),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ModelDone:
    """A model file the workflow loads, and how it got there."""

    path: str  # folder/name as the workflow names it
    status: ModelStatus
    sha256: str | None = None
    source: str | None = None
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "sha256": self.sha256,
            "source": self.source,
            "size": self.size,
        }


@dataclass(frozen=True)
class WarmUp:
    """The warm-up run: its time (the cloud's clock), or why it failed."""

    seconds: float | None = None
    job_id: str | None = None
    files: int = 0
    kept_in: str | None = None  # where its outputs are, when they were kept
    error: str | None = None
    exit_code: int = 0
    skipped: bool = False  # not run: the workflow was not runnable

    def to_json(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "job_id": self.job_id,
            "files": self.files,
            "kept_in": self.kept_in,
            "error": self.error,
        }


@dataclass
class PrepareReport:
    """Everything `prepare` did, and whether the workflow runs on the instance now."""

    instance: str
    workflow: str
    packs: list[PackDone] = field(default_factory=list)
    models: list[ModelDone] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    restart_seconds: float | None = None  # None: ComfyUI was not restarted
    valid: bool = False
    outputs: list[str] = field(default_factory=list)  # the output nodes that will run
    warm_up: WarmUp | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def restarted(self) -> bool:
        return self.restart_seconds is not None

    @property
    def changed(self) -> bool:
        """Whether anything was installed, downloaded or restarted."""
        installed = any(p.status != "already-installed" for p in self.packs)
        return installed or self.restarted or any(m.status == "downloaded" for m in self.models)

    @property
    def runnable(self) -> bool:
        return self.valid and not self.unresolved

    @property
    def exit_code(self) -> int:
        if not self.runnable:
            return EXIT_NOT_RUNNABLE
        if self.warm_up is not None and self.warm_up.error is not None and not self.warm_up.skipped:
            return self.warm_up.exit_code or 1
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "workflow": self.workflow,
            "runnable": self.runnable,
            "changed": self.changed,
            "packs": [p.to_json() for p in self.packs],
            "models": [m.to_json() for m in self.models],
            "restarted": self.restarted,
            "restart_seconds": self.restart_seconds,
            "valid": self.valid,
            "outputs": self.outputs,
            "unresolved": [u.to_json() for u in self.unresolved],
            "warm_up": self.warm_up.to_json() if self.warm_up else None,
            "warnings": self.warnings,
        }
