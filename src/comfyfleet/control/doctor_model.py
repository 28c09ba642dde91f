"""What a doctor check says: a status, evidence, and the fix (text, and what `--fix` does).

Checks are values produced by pure rules (`doctor_rules`, `doctor_host_rules`,
`queue_stall`) from observations; the services gather the observations and apply the fixes
whose `kind` is set. Only safe fixes get a kind: installing into the ComfyUI venv what a
node needs (torch pinned), removing an optional accelerator that fights torch, restarting a
ComfyUI that does not answer, repairing a queue that is hung while the GPU idles.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Every check, in the order a report lists them: name -> title.
TITLES = {
    "comfyui": "ComfyUI answers",
    "frontend": "frontend version",
    "custom-nodes": "custom nodes import",
    "venv-packages": "venv has what nodes import",
    "pip-check": "pip check",
    "torch-cuda": "torch, CUDA and driver agree",
    "accelerators": "accelerators match torch",
    "disk": "disk headroom",
    "memory": "memory headroom",
    "gpu-memory": "GPU memory",
    "queue": "queue makes progress",
}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


class FixKind(StrEnum):
    """What `doctor --fix` does for a check."""

    VENV_INSTALL = "venv-install"  # `packages` are requirements (`onnx==1.19.0`)
    VENV_UNINSTALL = "venv-uninstall"  # `packages` are distribution names
    RESTART = "restart"  # restart ComfyUI (it does not answer)
    QUEUE_REPAIR = "queue-repair"  # the stuck-queue ladder


@dataclass(frozen=True)
class Fix:
    """The remedy: `text` for a person (a command when there is one); `kind` when `--fix`
    applies it by itself; `restart` when it only takes effect once ComfyUI restarts."""

    text: str
    kind: FixKind | None = None
    packages: tuple[str, ...] = ()
    restart: bool = False

    @property
    def auto(self) -> bool:
        return self.kind is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "auto": self.auto,
            "action": None if self.kind is None else self.kind.value,
            "packages": list(self.packages),
            "needs_restart": self.restart,
        }


@dataclass(frozen=True)
class Check:
    """One check's verdict."""

    name: str  # stable id (`venv-packages`)
    title: str
    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    fix: Fix | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fix": None if self.fix is None else self.fix.to_json(),
        }


def skipped(name: str, why: str) -> Check:
    """A check that could not run (`why` says what it needed)."""
    return Check(name, TITLES[name], Status.SKIPPED, why)


def cli(ref: str, *words: str) -> str:
    """A comfyfleet command line for the fix texts, every word quoted for a POSIX shell."""
    return shlex.join(["comfyfleet", words[0], ref, *words[1:]])


def worst(checks: list[Check]) -> Status:
    """The most serious status among `checks` (skipped counts as ok)."""
    order = [Status.FAIL, Status.WARN, Status.OK]
    statuses = {c.status for c in checks}
    return next((s for s in order if s in statuses), Status.OK)
