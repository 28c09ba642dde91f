"""The stuck-queue repair ladder as a pure planner: which rung next, did it work, what to
re-submit. `services.queue_repair` executes what it says.

Rungs, in order, each only when it can apply:

    interrupt             POST /interrupt            (something is running)
    clear                 POST /queue {"clear"}      (something is pending)
    restart               restart ComfyUI            (SSH and a restart command)
    remove-queue-files    remove user/queue.db, -wal, -shm, restart again
                          (after a restart did not help, and only when such files exist)

A rung works when ComfyUI answers, none of the prompts found hung is still running, and a
tiny probe prompt put at the front of the queue runs to completion within the watch window:
an empty queue proves nothing (a broken persisted queue takes the next prompt and hangs on
it), a prompt that finishes proves the worker runs. The ladder stops at the first rung that
works. Afterwards every pending prompt of the snapshot taken before the first rung that is
neither queued nor in the history any more is re-submitted with its prompt_id and client_id;
the prompts that were running (the hung ones) are reported, never re-queued.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from comfyfleet.models.comfy import QueueItem, QueueState


class Rung(StrEnum):
    INTERRUPT = "interrupt"
    CLEAR = "clear"
    RESTART = "restart"
    PURGE = "remove-queue-files"


LADDER = (Rung.INTERRUPT, Rung.CLEAR, Rung.RESTART, Rung.PURGE)


class Probe(StrEnum):
    """What became of the probe prompt after a rung."""

    RAN = "ran"  # it ran to completion
    STUCK = "stuck"  # accepted, never finished within the window
    NOT_TRIED = "not-tried"  # a hung prompt still ran, or ComfyUI did not answer
    REJECTED = "rejected"  # the server refused it (its nodes are missing)


@dataclass(frozen=True)
class LadderFacts:
    """The queue and the instance just before choosing a rung."""

    running: int
    pending: int
    can_restart: bool
    queue_files: tuple[str, ...] = ()  # persisted queue files present (paths)


@dataclass(frozen=True)
class Outcome:
    """What one rung did and what was seen after it."""

    answers: bool
    hung_running: tuple[str, ...]  # prompts found hung that still run
    probe: Probe

    @property
    def worked(self) -> bool:
        return self.answers and not self.hung_running and self.probe is Probe.RAN

    def describe(self) -> str:
        if not self.answers:
            return "ComfyUI does not answer"
        if self.hung_running:
            return f"still running: {', '.join(self.hung_running)}"
        return {
            Probe.RAN: "the queue runs again (a probe prompt ran)",
            Probe.STUCK: "a probe prompt was accepted but never ran: the queue still hangs",
            Probe.NOT_TRIED: "the queue could not be tested",
            Probe.REJECTED: "the server refused the probe prompt",
        }[self.probe]


@dataclass(frozen=True)
class Step:
    rung: Rung
    outcome: Outcome | None  # None: the rung itself failed (see `error`)
    error: str | None = None
    detail: str = ""  # what the rung did (files removed, seconds a restart took)

    @property
    def worked(self) -> bool:
        return self.outcome is not None and self.outcome.worked


def next_rung(facts: LadderFacts, steps: Sequence[Step]) -> Rung | None:
    """The next rung to climb, or None (one worked, or nothing left that could help)."""
    if any(step.worked for step in steps):
        return None
    done = {step.rung for step in steps}
    for rung in LADDER:
        if rung in done:
            continue
        if rung is Rung.INTERRUPT and facts.running == 0:
            continue
        if rung is Rung.CLEAR and facts.pending == 0:
            continue
        if rung in (Rung.RESTART, Rung.PURGE) and not facts.can_restart:
            continue
        if rung is Rung.PURGE and (not facts.queue_files or Rung.RESTART not in done):
            continue
        return rung
    return None


@dataclass(frozen=True)
class ResubmitPlan:
    resubmit: tuple[QueueItem, ...]  # dropped pending prompts, in their queue order
    kept: tuple[str, ...]  # pending prompts still queued or done: nothing to do
    hung: tuple[str, ...]  # the prompts that were running: reported, never re-queued


def plan_resubmit(snapshot: QueueState, present: Collection[str]) -> ResubmitPlan:
    """What to re-submit after the ladder; `present`: ids queued or in the history now."""
    hung = tuple(item.prompt_id for item in snapshot.running)
    resubmit: list[QueueItem] = []
    kept: list[str] = []
    for item in sorted(snapshot.pending, key=lambda i: i.number):
        if item.prompt_id in hung:
            continue
        if item.prompt_id in present:
            kept.append(item.prompt_id)
        else:
            resubmit.append(item)
    return ResubmitPlan(tuple(resubmit), tuple(kept), hung)
