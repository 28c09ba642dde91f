"""Is ComfyUI's queue stuck? A watch of the queue, how long a prompt has stalled, the verdict.

A watch (`QueueWatch`) covers a short window: /queue at both ends, the progress events of the
running prompts the socket shows (ComfyUI sends a prompt's events to its own client only;
a prompt without a client broadcasts them), and GPU utilization samples. Progress means the
running prompt finished or changed, a pending prompt was taken, or an event named a running
prompt. A window is short, so how long a prompt has stalled is remembered across watches
(`StallRecord`: the first watch that saw it stalled, on the cloud's clock).

Verdict: a stall of at least `stuck_after` with the GPU idle is a hung queue (fail; `--fix`
runs the repair ladder). With the GPU busy it may be a long node without progress reports
as well as one stuck in a CUDA call: a warning, repaired only when asked (`queue repair`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comfyfleet.control.doctor_model import TITLES, Check, Fix, FixKind, Status, cli

GPU_IDLE_PCT = 10  # utilization at or below this in every sample counts as idle
PENDING_ONLY = "(pending, nothing running)"  # the stall key when no prompt runs at all


@dataclass(frozen=True)
class QueueWatch:
    """What one watch of the queue saw over `seconds` (cloud clock)."""

    seconds: float
    running_before: tuple[str, ...]
    running_after: tuple[str, ...]
    pending_before: int
    pending_after: int
    events: int = 0  # progress events of running prompts seen on the socket
    gpu_util: tuple[int, ...] | None = None  # utilization samples (busiest GPU); None: unknown

    @property
    def busy(self) -> bool:
        return bool(self.running_after or self.pending_after)

    def signs(self) -> list[str]:
        """The signs of progress the watch saw."""
        out: list[str] = []
        done = [p for p in self.running_before if p not in self.running_after]
        started = [p for p in self.running_after if p not in self.running_before]
        if done:
            out.append(f"finished or stopped: {', '.join(done)}")
        if started:
            out.append(f"started: {', '.join(started)}")
        if self.pending_after < self.pending_before and not started:
            out.append(f"pending went from {self.pending_before} to {self.pending_after}")
        if self.events:
            out.append(f"{self.events} progress event(s)")
        return out

    @property
    def progressed(self) -> bool:
        return bool(self.signs())

    def stalled_key(self) -> str | None:
        """What is stalled (the running prompt, or the pending queue), None if nothing is."""
        if self.progressed or not self.busy:
            return None
        if self.running_after:
            return self.running_after[0]
        return PENDING_ONLY


@dataclass(frozen=True)
class StallRecord:
    """The first time (cloud clock, epoch seconds) a watch saw `key` stalled."""

    key: str
    since: float


def gpu_idle(samples: Sequence[int] | None) -> bool | None:
    """True when every sample is at most GPU_IDLE_PCT; None when utilization is unknown."""
    if not samples:
        return None
    return all(s <= GPU_IDLE_PCT for s in samples)


def update_stall(watch: QueueWatch, previous: StallRecord | None, now: float) -> StallRecord | None:
    """The stall record after `watch` ended at `now` (None: nothing is stalled)."""
    key = watch.stalled_key()
    if key is None:
        return None
    if previous is not None and previous.key == key and previous.since <= now:
        return previous
    return StallRecord(key, now - watch.seconds)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def queue(
    ref: str,
    watch: QueueWatch,
    stall: StallRecord | None,
    now: float,
    stuck_after: float,
) -> Check:
    """The verdict on the queue (see the module docstring)."""
    title = TITLES["queue"]
    state = f"{len(watch.running_after)} running, {watch.pending_after} pending"
    idle = gpu_idle(watch.gpu_util)
    gpu = {True: "GPU idle", False: "GPU busy", None: "GPU unknown"}[idle]
    evidence = [f"watched {_minutes(watch.seconds)}: {state}" if watch.seconds else state]
    if watch.gpu_util:
        evidence.append("GPU utilization samples: " + ", ".join(f"{u}%" for u in watch.gpu_util))
    if not watch.busy:
        return Check("queue", title, Status.OK, "the queue is empty", tuple(evidence[1:]))
    if stall is None:
        signs = "; ".join(watch.signs()) or "nothing stalled"
        return Check("queue", title, Status.OK, f"progressing ({signs})", tuple(evidence))
    stalled = max(0.0, now - stall.since)
    what = "the pending queue" if stall.key == PENDING_ONLY else f"prompt {stall.key}"
    summary = f"{what} made no progress for {_minutes(stalled)} ({gpu})"
    evidence.append(f"stuck after {_minutes(stuck_after)} without progress (--stuck-after)")
    if stalled < stuck_after:
        return Check("queue", title, Status.OK, summary + ", not yet stuck", tuple(evidence))
    repair = cli(ref, "queue", "repair")
    if idle:
        fix = Fix(
            f"repair it (interrupt, clear, restart, re-submit the pending prompts): {repair}",
            FixKind.QUEUE_REPAIR,
        )
        return Check("queue", title, Status.FAIL, summary, tuple(evidence), fix)
    why = (
        "a busy GPU may be a long node without progress reports as well as one stuck in a CUDA call"
        if idle is False
        else "the GPU cannot be seen without SSH"
    )
    fix = Fix(f"{why}; if it is stuck: {repair}")
    return Check("queue", title, Status.WARN, summary, tuple(evidence), fix)
