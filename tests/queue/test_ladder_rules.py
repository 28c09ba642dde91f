"""The repair ladder and the stall verdict as tables: pure planners fed with observations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfyfleet.control.doctor_model import FixKind, Status
from comfyfleet.control.queue_ladder import (
    LadderFacts,
    Outcome,
    Probe,
    Rung,
    Step,
    next_rung,
    plan_resubmit,
)
from comfyfleet.control.queue_stall import (
    PENDING_ONLY,
    QueueWatch,
    StallRecord,
    gpu_idle,
    queue,
    update_stall,
)
from comfyfleet.models.comfy import QueueState
from comfyfleet.services.doctor_queue import StallMemory

RAN = Outcome(True, (), Probe.RAN)
HUNG = Outcome(True, ("p1",), Probe.NOT_TRIED)
STUCK = Outcome(True, (), Probe.STUCK)
DOWN = Outcome(False, (), Probe.NOT_TRIED)
FILES = ("/w/ComfyUI/user/queue.db",)


def step(rung: Rung, outcome: Outcome | None, error: str | None = None) -> Step:
    return Step(rung, outcome, error)


@pytest.mark.parametrize(
    ("facts", "steps", "expected"),
    [
        (LadderFacts(1, 2, True), [], Rung.INTERRUPT),
        (LadderFacts(0, 2, True), [], Rung.CLEAR),  # nothing running: nothing to interrupt
        (LadderFacts(0, 0, True), [], Rung.RESTART),
        (LadderFacts(1, 2, True), [step(Rung.INTERRUPT, HUNG)], Rung.CLEAR),
        (LadderFacts(1, 0, True), [step(Rung.INTERRUPT, HUNG)], Rung.RESTART),
        (LadderFacts(1, 2, True), [step(Rung.INTERRUPT, RAN)], None),  # it worked: stop
        (
            LadderFacts(1, 0, True, FILES),
            [step(Rung.INTERRUPT, HUNG), step(Rung.CLEAR, HUNG), step(Rung.RESTART, STUCK)],
            Rung.PURGE,
        ),
        (  # no queue files: nothing left that could help
            LadderFacts(1, 0, True),
            [step(Rung.INTERRUPT, HUNG), step(Rung.CLEAR, HUNG), step(Rung.RESTART, STUCK)],
            None,
        ),
        (  # a restart that failed still counts as tried
            LadderFacts(0, 0, True, FILES),
            [step(Rung.RESTART, None, "did not answer in 600 s")],
            Rung.PURGE,
        ),
        (LadderFacts(1, 0, True, FILES), [step(Rung.INTERRUPT, HUNG)], Rung.RESTART),
        (LadderFacts(1, 1, False, FILES), [step(Rung.INTERRUPT, HUNG)], Rung.CLEAR),  # URL
        (LadderFacts(1, 1, False), [step(Rung.INTERRUPT, HUNG), step(Rung.CLEAR, HUNG)], None),
        (
            LadderFacts(0, 0, True, FILES),
            [step(r, STUCK) for r in (Rung.INTERRUPT, Rung.CLEAR, Rung.RESTART, Rung.PURGE)],
            None,
        ),
    ],
)
def test_next_rung(facts: LadderFacts, steps: list[Step], expected: Rung | None) -> None:
    assert next_rung(facts, steps) is expected


@pytest.mark.parametrize(
    ("outcome", "worked"),
    [(RAN, True), (HUNG, False), (STUCK, False), (DOWN, False)],
)
def test_a_rung_works_only_when_a_probe_runs(outcome: Outcome, worked: bool) -> None:
    assert outcome.worked is worked
    assert step(Rung.RESTART, outcome).worked is worked
    assert outcome.describe()
    assert not step(Rung.RESTART, None, "boom").worked


def item(number: int, prompt_id: str, client: str | None = "artist") -> list[Any]:
    extra = {"client_id": client} if client else {}
    return [number, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}, extra, ["9"]]


def test_plan_resubmit_brings_back_what_a_rung_dropped_in_queue_order() -> None:
    snapshot = QueueState.from_wire(
        {
            "queue_running": [item(3, "hung")],
            "queue_pending": [item(7, "b"), item(5, "a"), item(9, "done"), item(8, "queued")],
        }
    )
    plan = plan_resubmit(snapshot, present={"done", "queued", "probe"})
    assert [i.prompt_id for i in plan.resubmit] == ["a", "b"]
    assert plan.resubmit[0].client_id == "artist" and plan.resubmit[0].outputs == ("9",)
    assert plan.kept == ("queued", "done")  # queue order (by number)
    assert plan.hung == ("hung",)  # reported, never re-queued
    empty = plan_resubmit(QueueState((), ()), present=set())
    assert (empty.resubmit, empty.kept, empty.hung) == ((), (), ())


def watch(
    before: tuple[str, ...] = ("p1",),
    after: tuple[str, ...] = ("p1",),
    pending: tuple[int, int] = (2, 2),
    events: int = 0,
    gpu: tuple[int, ...] | None = (0, 0),
) -> QueueWatch:
    return QueueWatch(60.0, before, after, pending[0], pending[1], events, gpu)


@pytest.mark.parametrize(
    ("seen", "key", "signs"),
    [
        (watch(), "p1", []),
        (watch(after=()), None, ["finished or stopped: p1"]),
        (watch(after=("p2",)), None, ["finished or stopped: p1", "started: p2"]),
        (watch(events=3), None, ["3 progress event(s)"]),
        (watch(pending=(2, 1)), None, ["pending went from 2 to 1"]),
        (watch(before=(), after=(), pending=(1, 1)), PENDING_ONLY, []),
        (watch(before=(), after=(), pending=(0, 0)), None, []),
    ],
)
def test_what_counts_as_progress(seen: QueueWatch, key: str | None, signs: list[str]) -> None:
    assert seen.signs() == signs
    assert seen.stalled_key() == key


def test_a_stall_is_remembered_across_watches_of_the_same_prompt() -> None:
    first = update_stall(watch(), None, now=1000.0)
    assert first == StallRecord("p1", 940.0)  # stalled since the watch began
    assert update_stall(watch(), first, now=1600.0) == first
    assert update_stall(watch(after=("p2",)), first, now=1600.0) is None
    other = update_stall(watch(before=("p9",), after=("p9",)), first, now=1600.0)
    assert other == StallRecord("p9", 1540.0)


@pytest.mark.parametrize(
    ("samples", "idle"),
    [((0, 3), True), ((0, 98), False), ((), None), (None, None)],
)
def test_gpu_idle(samples: tuple[int, ...] | None, idle: bool | None) -> None:
    assert gpu_idle(samples) is idle


@pytest.mark.parametrize(
    ("seen", "since", "status", "kind"),
    [
        (watch(before=(), after=(), pending=(0, 0)), None, Status.OK, None),
        (watch(after=()), None, Status.OK, None),  # progressing
        (watch(), 900.0, Status.OK, None),  # stalled 100 s: not yet stuck (600 s)
        (watch(), 100.0, Status.FAIL, FixKind.QUEUE_REPAIR),  # 15 min, GPU idle
        (watch(gpu=(97, 99)), 100.0, Status.WARN, None),  # GPU busy: maybe a long node
        (watch(gpu=None), 100.0, Status.WARN, None),  # GPU unknown (a URL)
    ],
)
def test_the_queue_verdict(
    seen: QueueWatch, since: float | None, status: Status, kind: FixKind | None
) -> None:
    stall = None if since is None else StallRecord(seen.stalled_key() or "p1", since)
    check = queue("box", seen, stall, now=1000.0, stuck_after=600.0)
    assert check.status is status
    assert (check.fix.kind if check.fix else None) is kind
    if status is not Status.OK:
        assert check.fix is not None and "comfyfleet queue box repair" in check.fix.text
    if status is Status.FAIL:
        assert check.summary == "prompt p1 made no progress for 15.0 min (GPU idle)"


def test_stall_records_survive_in_a_small_file(tmp_path: Path) -> None:
    memory = StallMemory(tmp_path / "state")
    assert memory.get("instance:1") is None
    memory.put("instance:1", StallRecord("p1", 940.0))
    memory.put("http://h:1", StallRecord(PENDING_ONLY, 5.0))
    assert StallMemory(tmp_path / "state").get("instance:1") == StallRecord("p1", 940.0)
    memory.put("instance:1", None)
    assert memory.get("instance:1") is None and memory.get("http://h:1") is not None
    (tmp_path / "state" / "queue-stalls.json").write_text("{not json")
    assert memory.get("http://h:1") is None  # a damaged file is forgotten, never fatal
    memory.put("instance:2", StallRecord("p2", 1.0))
    assert memory.get("instance:2") == StallRecord("p2", 1.0)
