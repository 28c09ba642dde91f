"""`doctor --fix`: apply the safe fixes the checks named, in an order that works.

1. remove optional accelerators that fight torch (so installs resolve against what stays);
2. install into the venv what nodes import from another Python (torch pinned);
3. repair a hung queue (the ladder restarts ComfyUI when it has to, and re-submits);
4. restart ComfyUI when a fix needs it and nothing restarted it yet — unless prompts are
   queued or running: a fix never drops work, so the restart is then left to the user
   (`comfyfleet restart ID` once the queue is idle); a ComfyUI that does not answer is
   restarted in any case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from comfyfleet.control.doctor_model import Check, FixKind, Status, cli
from comfyfleet.control.queue_ladder import Rung
from comfyfleet.errors import ComfyError, ComfyfleetError, RemoteError
from comfyfleet.services.doctor_access import Access
from comfyfleet.services.doctor_python import guarded_install, remove_optional
from comfyfleet.services.queue_repair import RepairReport, repair
from comfyfleet.services.remote_ops import changing

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FixResult:
    check: str
    action: str
    applied: bool
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "action": self.action,
            "applied": self.applied,
            "outcome": self.outcome,
        }


def fixable(checks: list[Check]) -> list[Check]:
    """The checks whose fix `--fix` applies (warnings included, when their fix is safe)."""
    return [
        c
        for c in checks
        if c.fix is not None and c.fix.auto and c.status in (Status.FAIL, Status.WARN)
    ]


async def apply_fixes(
    access: Access, checks: list[Check], *, repair_seconds: float, progress: Progress
) -> tuple[list[FixResult], RepairReport | None]:
    """Apply every safe fix of `checks` (see the module docstring)."""
    todo = fixable(checks)
    results: list[FixResult] = []
    needs_restart: list[str] = []
    by_kind = {kind: [c for c in todo if c.fix and c.fix.kind is kind] for kind in FixKind}
    for kind in (FixKind.VENV_UNINSTALL, FixKind.VENV_INSTALL):
        for check in by_kind[kind]:
            assert check.fix is not None
            progress(f"fixing {check.name}: {kind.value} {' '.join(check.fix.packages)}")
            try:
                ssh = access.need_ssh(f"fixing {check.name}")
                what = f"doctor --fix {check.name}"
                async with changing(access.settings.remote, ssh.conn, ssh.layout, what, progress):
                    if kind is FixKind.VENV_UNINSTALL:
                        outcome = await remove_optional(ssh, check.fix.packages)
                    else:
                        outcome = await guarded_install(ssh, check.fix.packages)
            except ComfyfleetError as exc:  # the guard's refusals and rollbacks too
                results.append(FixResult(check.name, kind.value, False, exc.message))
                continue
            results.append(FixResult(check.name, kind.value, True, outcome))
            if check.fix.restart:
                needs_restart.append(check.name)
    restarted = False
    report: RepairReport | None = None
    for check in by_kind[FixKind.QUEUE_REPAIR]:
        progress("fixing the queue: the repair ladder")
        try:
            report = await repair(
                access, progress=progress, seconds=repair_seconds, known_stuck=check.summary
            )
        except (RemoteError, ComfyError) as exc:
            results.append(FixResult(check.name, FixKind.QUEUE_REPAIR.value, False, exc.message))
            continue
        restarted = any(
            s.rung in (Rung.RESTART, Rung.PURGE) and s.outcome is not None for s in report.steps
        )
        said = "repaired" if report.repaired else "the ladder did not repair it"
        results.append(FixResult(check.name, FixKind.QUEUE_REPAIR.value, report.repaired, said))
    unreachable = [c.name for c in by_kind[FixKind.RESTART] if c.fix and not c.fix.restart]
    restart_for = [c.name for c in by_kind[FixKind.RESTART] if c.fix and c.fix.restart]
    needs_restart += restart_for
    if unreachable or (needs_restart and not restarted):
        results.append(await _restart(access, unreachable, needs_restart, progress))
    return results, report


async def _restart(
    access: Access, unreachable: list[str], needs: list[str], progress: Progress
) -> FixResult:
    checks = ", ".join(unreachable + needs)
    if not unreachable:
        try:
            state = await access.client.queue()
        except ComfyError as exc:
            return FixResult(checks, FixKind.RESTART.value, False, exc.message)
        if len(state):
            return FixResult(
                checks,
                FixKind.RESTART.value,
                False,
                f"not restarted: {len(state.running)} running and {len(state.pending)} pending "
                f"prompt(s) would be lost; run {cli(access.ref, 'restart')} once it is idle",
            )
    progress("restarting ComfyUI")
    try:
        seconds = await access.restart()
    except (RemoteError, ComfyError) as exc:
        return FixResult(checks, FixKind.RESTART.value, False, exc.message)
    return FixResult(
        checks, FixKind.RESTART.value, True, f"ComfyUI answers again ({seconds:.0f} s)"
    )
