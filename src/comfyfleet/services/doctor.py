"""`comfyfleet doctor ID [--fix]`: is this ComfyUI healthy, and if not, what to do about it.

Checks (names as in the report): `comfyui` (answers, its version), `frontend`,
`custom-nodes` (IMPORT FAILED packs), `venv-packages` (modules a node misses that another
Python has: a global pip), `pip-check`, `torch-cuda` (torch's CUDA vs the driver and Vast's
cuda_max_good, torch sees the GPU), `accelerators` (xformers and the like pinning another
torch), `disk`, `memory`, `gpu-memory` (stray processes), `queue` (a prompt without progress
for --stuck-after while the GPU idles). A plain URL gets the HTTP checks only; the others
are reported skipped with the reason. With `fix`, the safe fixes are applied
(`services.doctor_fix`) and every check runs again: the report holds both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.config import Settings
from comfyfleet.control import doctor_rules as rules
from comfyfleet.control.doctor_model import TITLES, Check, Status, skipped, worst
from comfyfleet.errors import ComfyError
from comfyfleet.models.comfy import SystemStats
from comfyfleet.services.doctor_access import Access, open_access
from comfyfleet.services.doctor_fix import FixResult, apply_fixes, fixable
from comfyfleet.services.doctor_host import custom_nodes_check, machine_checks
from comfyfleet.services.doctor_python import PYTHON_CHECKS, python_checks, torch_check
from comfyfleet.services.doctor_queue import WATCH_SECONDS, queue_check
from comfyfleet.services.queue_repair import REPAIR_WINDOW, RepairReport
from comfyfleet.services.targets import CloudOpener

Progress = Callable[[str], None]
SSH_CHECKS = ("custom-nodes", *PYTHON_CHECKS, "torch-cuda", "disk", "memory", "gpu-memory")


@dataclass(frozen=True)
class DoctorOptions:
    fix: bool = False
    stuck_after: float = 600.0  # cloud seconds without progress before a queue is stuck
    watch: float = WATCH_SECONDS  # cloud seconds the queue is watched
    repair_window: float = REPAIR_WINDOW  # cloud seconds each repair observation may take


@dataclass
class DoctorReport:
    target: str
    mode: str  # "instance" or "url"
    checks: list[Check]
    before: list[Check] | None = None  # the first examination, when fixes were applied
    fixes: list[FixResult] = field(default_factory=list)
    repair: RepairReport | None = None

    @property
    def status(self) -> Status:
        return worst(self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "status": self.status.value,
            "checks": [c.to_json() for c in self.checks],
            "before": None if self.before is None else [c.to_json() for c in self.before],
            "fixes": [f.to_json() for f in self.fixes],
            "repair": None if self.repair is None else self.repair.to_json(),
        }


async def doctor(
    target: str,
    settings: Settings,
    *,
    token: str | None = None,
    open_cloud: CloudOpener | None = None,
    options: DoctorOptions = DoctorOptions(),
    progress: Progress = lambda _m: None,
) -> DoctorReport:
    """Examine `target` (instance id/name or ComfyUI URL); with `options.fix`, fix and
    examine again."""
    async with open_access(target, settings, token=token, open_cloud=open_cloud) as access:
        mode = "instance" if access.instance is not None else "url"
        if access.ssh_error:
            progress(f"SSH: {access.ssh_error}")
        checks = await examine(access, options, progress)
        report = DoctorReport(access.display, mode, checks)
        if not options.fix or not fixable(checks):
            return report
        report.before = checks
        report.fixes, report.repair = await apply_fixes(
            access, checks, repair_seconds=options.repair_window, progress=progress
        )
        progress("checking again")
        report.checks = await examine(access, options, progress)
        return report


async def examine(access: Access, options: DoctorOptions, progress: Progress) -> list[Check]:
    """Every check once, in the order of `TITLES`."""
    ref = access.ref
    progress("asking ComfyUI")
    stats: SystemStats | None = None
    error: str | None = None
    try:
        stats = await access.client.system_stats()
    except ComfyError as exc:
        error = exc.message
    checks = [rules.comfyui(ref, stats, error, access.can_restart)]
    required = stats.required_frontend_version if stats else None
    if access.ssh is None:
        why = access.ssh_error or "a URL target: give an instance for the checks over SSH"
        checks.append(rules.frontend(ref, required, None, known=False))
        checks += [skipped(name, f"needs SSH: {why}") for name in SSH_CHECKS]
    else:
        progress("reading the log, the venv and the machine")
        nodes, failed = await custom_nodes_check(ref, access.ssh)
        # One SSH connection carries these side by side (each is a channel of its own).
        (machine, host), (python, venv) = await asyncio.gather(
            machine_checks(ref, access.ssh),
            python_checks(ref, access.ssh, failed, required),
        )
        torch = torch_check(ref, venv, host, access.instance)
        checks += [nodes, *python, torch, *machine]
    if stats is None:
        checks.append(skipped("queue", "ComfyUI does not answer"))
    else:
        progress("watching the queue")
        try:
            checks.append(
                await queue_check(access, stuck_after=options.stuck_after, seconds=options.watch)
            )
        except ComfyError as exc:
            checks.append(skipped("queue", f"watching the queue failed: {exc.message}"))
    order = list(TITLES)
    return sorted(checks, key=lambda c: order.index(c.name))
