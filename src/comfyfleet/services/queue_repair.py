"""`comfyfleet queue ID show|interrupt|clear|repair`: ComfyUI's queue, and the repair ladder.

`repair` first snapshots /queue (each item whole: number, prompt_id, prompt, extra_data
with the client_id, outputs; Comfy.org credentials withheld) into a 0600 file under
`<data dir>/queue-snapshots/`, so no prompt can be lost whatever happens next. It then
watches the queue: one that progresses (or an empty one that runs a probe) needs nothing.
Otherwise it climbs the ladder planned by `control.queue_ladder` — interrupt, clear,
restart, remove the persisted queue files and restart again — and stops at the first rung
after which the queue runs. Then it re-submits the pending prompts a rung dropped, each with
its prompt_id and client_id, in queue order; the prompt(s) that hung are reported with what
became of them, never re-queued.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from comfyfleet.control.queue_ladder import (
    LadderFacts,
    ResubmitPlan,
    Rung,
    Step,
    next_rung,
    plan_resubmit,
)
from comfyfleet.errors import ComfyError, RemoteError
from comfyfleet.models.comfy import QueueItem, QueueState
from comfyfleet.remote.host_facts import present_queue_files, purge_restart_command
from comfyfleet.services.doctor_access import Access
from comfyfleet.services.doctor_queue import forget_stall, watch_queue
from comfyfleet.services.queue_probe import Prober

Progress = Callable[[str], None]
REPAIR_WINDOW = 30.0  # cloud seconds each observation may take
SNAPSHOTS_KEPT = 50  # queue snapshots kept in the data folder, newest first


#: extra_data keys holding the user's Comfy.org credentials (API nodes): kept in memory for
#: the re-submission, withheld from the snapshot file (ComfyUI drops them from its history too).
SENSITIVE_EXTRA = ("auth_token_comfy_org", "api_key_comfy_org")


def item_json(item: QueueItem) -> list[Any]:
    """A queue item as ComfyUI shows it: [number, prompt_id, prompt, extra_data, outputs],
    credentials withheld."""
    extra = {k: "<withheld>" if k in SENSITIVE_EXTRA else v for k, v in item.extra_data.items()}
    return [item.number, item.prompt_id, dict(item.prompt), extra, list(item.outputs)]


def queue_json(state: QueueState) -> dict[str, Any]:
    return {
        "running": [_summary(i) for i in state.running],
        "pending": [_summary(i) for i in state.pending],
    }


def _summary(item: QueueItem) -> dict[str, Any]:
    return {
        "number": item.number,
        "prompt_id": item.prompt_id,
        "client_id": item.client_id,
        "nodes": len(item.prompt),
        "outputs": list(item.outputs),
    }


async def show(access: Access) -> QueueState:
    return await access.client.queue()


async def interrupt(access: Access) -> list[str]:
    """Interrupt the running prompt(s), each by its id (never a later one by accident)."""
    running = [item.prompt_id for item in (await access.client.queue()).running]
    for prompt_id in running:
        await access.client.interrupt(prompt_id)
    return running


async def clear(access: Access) -> list[str]:
    """Drop every pending prompt; returns their ids."""
    pending = [item.prompt_id for item in (await access.client.queue()).pending]
    await access.client.clear_queue()
    return pending


def save_snapshot(access: Access, state: QueueState) -> str:
    """Write the queue, items whole, to a private file; returns its path.

    Only the newest `SNAPSHOTS_KEPT` snapshots stay: older ones are removed.
    """
    folder = access.state_dir / "queue-snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = int(access.clock.now() * 1000)
    key = access.instance.id if access.instance else "url"
    path = folder / f"queue-{key}-{stamp}.json"
    body = {
        "target": access.display,
        "taken_at": access.clock.now(),
        "queue_running": [item_json(i) for i in state.running],
        "queue_pending": [item_json(i) for i in state.pending],
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(body, fh, indent=1)
    prune_snapshots(folder)
    return str(path)


def prune_snapshots(folder: Path) -> None:
    """Remove all but the newest `SNAPSHOTS_KEPT` snapshots (by modification time) in `folder`."""
    found: list[tuple[float, str, Path]] = []
    for path in folder.glob("queue-*.json"):
        with contextlib.suppress(OSError):
            found.append((path.stat().st_mtime, path.name, path))
    found.sort(reverse=True)
    for _, _, path in found[SNAPSHOTS_KEPT:]:
        with contextlib.suppress(OSError):
            path.unlink()


@dataclass
class RepairReport:
    target: str
    snapshot_file: str
    snapshot: QueueState
    needed: bool = True  # False: the queue was found working, nothing was done
    observed: str = ""
    steps: list[Step] = field(default_factory=list)
    hung: dict[str, str] = field(default_factory=dict)  # prompt id -> what became of it
    resubmitted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    not_resubmitted: dict[str, str] = field(default_factory=dict)  # id -> error

    @property
    def repaired(self) -> bool:
        return not self.needed or any(step.worked for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "snapshot_file": self.snapshot_file,
            "snapshot": queue_json(self.snapshot),
            "needed": self.needed,
            "observed": self.observed,
            "repaired": self.repaired,
            "steps": [
                {
                    "rung": s.rung.value,
                    "worked": s.worked,
                    "detail": s.detail,
                    "error": s.error,
                    "outcome": None if s.outcome is None else s.outcome.describe(),
                    "probe": None if s.outcome is None else s.outcome.probe.value,
                }
                for s in self.steps
            ],
            "hung": self.hung,
            "resubmitted": self.resubmitted,
            "kept": self.kept,
            "not_resubmitted": self.not_resubmitted,
        }


async def repair(
    access: Access,
    *,
    seconds: float = REPAIR_WINDOW,
    progress: Progress = lambda _m: None,
    known_stuck: str | None = None,
) -> RepairReport:
    """Snapshot, check, climb the ladder, re-submit (see the module docstring).

    `known_stuck`: what a watch just saw (the doctor's queue check); the queue is not
    watched again before the first rung."""
    snapshot = await access.client.queue()
    report = RepairReport(access.display, save_snapshot(access, snapshot), snapshot)
    progress(
        f"snapshot: {len(snapshot.running)} running, {len(snapshot.pending)} pending "
        f"-> {report.snapshot_file}"
    )
    prober = Prober(access, seconds)
    hung = tuple(item.prompt_id for item in snapshot.running)
    if known_stuck is not None:
        report.observed = known_stuck
    elif snapshot.running or snapshot.pending:
        watch = await watch_queue(access, seconds)
        if watch.progressed:
            report.needed, report.observed = False, "progressing: " + "; ".join(watch.signs())
            progress(f"nothing to repair: the queue is {report.observed}")
            return report
        report.observed = f"no progress in {watch.seconds:.0f} s"
    else:
        outcome = await prober.outcome(())
        if outcome.worked:
            report.needed, report.observed = False, "empty, and a probe prompt ran"
            progress("nothing to repair: the queue is empty and runs a probe prompt")
            return report
        report.observed = outcome.describe()
    progress(f"the queue is stuck ({report.observed})")
    while (rung := next_rung(await _facts(access), report.steps)) is not None:
        progress(f"{rung.value} ...")
        step = await _climb(access, rung, hung, prober)
        report.steps.append(step)
        said = step.error or (step.outcome.describe() if step.outcome else "")
        progress(f"{rung.value}: {'worked' if step.worked else 'did not help'} ({said})")
    await prober.discard()
    await _hung_fate(access, report, hung)
    if report.repaired:
        forget_stall(access)
        await _resubmit(access, report, progress)
    return report


async def _facts(access: Access) -> LadderFacts:
    state = await access.client.queue()
    files: tuple[str, ...] = ()
    if access.ssh is not None:
        try:
            found = await present_queue_files(access.ssh.conn, access.ssh.layout.comfy_dir)
            files = tuple(str(p) for p in found)
        except RemoteError:
            files = ()
    return LadderFacts(len(state.running), len(state.pending), access.can_restart, files)


async def _climb(access: Access, rung: Rung, hung: tuple[str, ...], prober: Prober) -> Step:
    detail = ""
    try:
        if rung is Rung.INTERRUPT:
            detail = "interrupted: " + ", ".join(await interrupt(access))
        elif rung is Rung.CLEAR:
            detail = f"dropped {len(await clear(access))} pending prompt(s)"
        elif rung is Rung.RESTART:
            detail = f"ComfyUI answered {await access.restart():.0f} s after the restart"
        else:
            ssh = access.need_ssh("removing the persisted queue")
            files = await present_queue_files(ssh.conn, ssh.layout.comfy_dir)
            took = await access.restart(purge_restart_command(ssh.layout, files))
            names = ", ".join(PurePosixPath(p).name for p in files)
            detail = f"removed {names}; ComfyUI answered {took:.0f} s after the restart"
    except (ComfyError, RemoteError) as exc:
        return Step(rung, None, error=exc.message, detail=detail)
    return Step(rung, await prober.outcome(hung), detail=detail)


async def _hung_fate(access: Access, report: RepairReport, hung: tuple[str, ...]) -> None:
    try:
        running = {item.prompt_id for item in (await access.client.queue()).running}
        for prompt_id in hung:
            entry = None if prompt_id in running else await access.client.history(prompt_id)
            if prompt_id in running:
                report.hung[prompt_id] = "still running"
            elif entry is not None:
                report.hung[prompt_id] = f"ended: {entry.status_str or 'unknown'} (not re-queued)"
            else:
                report.hung[prompt_id] = "dropped by the repair (not re-queued)"
    except ComfyError as exc:
        report.hung.update({p: f"unknown ({exc.message})" for p in hung})


async def _present(access: Access, snapshot: QueueState) -> set[str]:
    """Which of the snapshot's prompts the server still has (queued or in the history)."""
    client = access.client
    present = set((await client.queue()).ids())
    for item in snapshot.pending:
        if item.prompt_id not in present and await client.history(item.prompt_id) is not None:
            present.add(item.prompt_id)
    return present


async def _resubmit(access: Access, report: RepairReport, progress: Progress) -> None:
    plan: ResubmitPlan = plan_resubmit(report.snapshot, await _present(access, report.snapshot))
    report.kept = list(plan.kept)
    for item in plan.resubmit:
        extra = {k: v for k, v in item.extra_data.items() if k != "client_id"}
        try:
            async with access.client_as(item.client_id) as client:
                await client.queue_prompt(
                    item.prompt,
                    prompt_id=item.prompt_id,
                    extra_data=extra,
                    partial_targets=item.outputs or None,
                    resubmit=True,
                )
        except ComfyError as exc:
            report.not_resubmitted[item.prompt_id] = exc.message
            progress(f"could not re-submit {item.prompt_id}: {exc.message}")
            continue
        report.resubmitted.append(item.prompt_id)
    if plan.resubmit:
        progress(
            f"re-submitted {len(report.resubmitted)} of {len(plan.resubmit)} dropped prompt(s)"
        )
