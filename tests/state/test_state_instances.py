"""Observations from Vast become rows and events; our own marks; leases for the loop."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.errors import StateError
from comfyfleet.models.vast import Instance, InstanceStatus, Offer
from comfyfleet.state.db import Database
from comfyfleet.state.rows import MANUAL_POOL, EventKind
from comfyfleet.util.clock import ManualClock

VAST_ID = 31_500_000


def seen(actual: str | None, intended: str | None = "running", **extra: Any) -> Instance:
    """An instance as Vast lists it (the same JSON shape the Vast adapter parses)."""
    body: dict[str, Any] = {
        "id": VAST_ID,
        "machine_id": 4242,
        "label": extra.pop("label", "comfyfleet:manual:11111111-2222-3333-4444-555555555555"),
        "actual_status": actual,
        "intended_status": intended,
        "gpu_name": "RTX 4090",
        "num_gpus": 1,
        "disk_space": 40.0,
        "dph_total": 0.42,
        "storage_total_cost": 0.0083,
        "image_uuid": "vastai/comfy:v0.3.64-cuda-12.8",
    }
    body.update(extra)
    return Instance.model_validate(body)


# (actual_status, intended_status) as Vast reports them over a life, and what we expect.
LIFE = [
    (None, "running", InstanceStatus.CREATING),
    ("loading", "running", InstanceStatus.LOADING),
    ("loading", "running", InstanceStatus.LOADING),  # no change: no event
    ("running", "running", InstanceStatus.RUNNING),
    ("running", "stopped", InstanceStatus.STOPPED),  # stop asked, container not down yet
    ("exited", "stopped", InstanceStatus.STOPPED),  # no normalised change: no event
    ("exited", "running", InstanceStatus.SCHEDULING),  # start asked, waiting for its GPU
    ("running", "running", InstanceStatus.RUNNING),
    ("offline", "running", InstanceStatus.OFFLINE),
]


def test_transitions_become_events_and_times(db: Database, clock: ManualClock) -> None:
    t0 = clock.now()
    all_events = []
    for step, (actual, intended, expected) in enumerate(LIFE):
        row, events = db.instances.upsert_from_vast(seen(actual, intended), now=t0 + 10 * step)
        assert row.status is expected
        assert row.actual_status == actual and row.intended_status == intended
        assert row.last_seen_at == t0 + 10 * step
        all_events += events
    observed = [(e.from_status, e.to_status, e.at - t0) for e in all_events]
    assert observed == [
        (None, "creating", 0),
        ("creating", "loading", 10),
        ("loading", "running", 30),
        ("running", "stopped", 40),
        ("stopped", "scheduling", 60),
        ("scheduling", "running", 70),
        ("running", "offline", 80),
    ]
    assert all(e.kind is EventKind.STATUS for e in all_events)
    assert all_events[0].detail["first_seen"] is True
    assert db.instances.events(all_events[0].instance_id) == all_events
    row = db.instances.get(all_events[0].instance_id)
    assert row.running_at == t0 + 70  # the last time it became running
    assert row.stopped_at == t0 + 40
    assert row.created_at == t0 and row.updated_at == t0 + 80


def test_first_sighting_of_an_unknown_instance(db: Database) -> None:
    ports = {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40022"}]}
    ports["8188/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": "40188"}]
    inst = seen(
        "running",
        label="comfyfleet:studio:aaaaaaaa-0000-0000-0000-000000000000",
        public_ipaddr=" 203.0.113.9\n",
        ssh_host="ssh4.vast.ai",
        ssh_port=12345,
        ports=ports,
    )
    row, [event] = db.instances.upsert_from_vast(inst)
    assert row.vast_id == VAST_ID and row.intent_id is None and row.name is None
    assert row.pool == "studio"  # taken from the tracking label
    assert row.public_ip == "203.0.113.9" and row.ssh_host == "ssh4.vast.ai"
    assert row.ports == {"22/tcp": 40022, "8188/tcp": 40188}
    assert row.comfy_port == 40188
    assert row.gpu_name == "RTX 4090" and row.disk_gb == 40.0
    assert row.dph_total == pytest.approx(0.42) and row.storage_dph == pytest.approx(0.0083)
    assert row.image == "vastai/comfy:v0.3.64-cuda-12.8"
    assert row.running_at is not None
    assert event.from_status is None and event.to_status == "running"

    other, _ = db.instances.upsert_from_vast(
        seen("running", label="someone else's box").model_copy(update={"id": 99})
    )
    assert other.pool == MANUAL_POOL and other.label == "someone else's box"


def test_sighting_binds_a_pending_create_by_label(
    db: Database, offer: Offer, clock: ManualClock
) -> None:
    # The create reached Vast but the process died before `complete`: reconcile sees it.
    intent = db.intents.record(pool="manual", offer=offer, request={}, name="lost")
    row, [event] = db.instances.upsert_from_vast(seen("loading", label=intent.label))
    assert row.vast_id == VAST_ID and row.intent_id == intent.id and row.name == "lost"
    assert row.offer == offer  # our snapshot survives the observation
    assert event.detail["bound_by_label"] is True
    assert (event.from_status, event.to_status) == ("creating", "loading")
    assert len(db.instances.live()) == 1
    # complete() after the sighting agrees with it.
    assert db.intents.complete(intent.id, VAST_ID).vast_id == VAST_ID


def test_ready_holds_only_while_running(db: Database, clock: ManualClock) -> None:
    row, _ = db.instances.upsert_from_vast(seen("running"))
    clock.advance(5)
    ready = db.instances.mark_ready(row.id)
    assert ready.ready_at == clock.now()
    stopped, _ = db.instances.upsert_from_vast(seen("exited", "stopped"))
    assert stopped.ready_at is None and stopped.stopped_at == clock.now()
    kinds = [e.kind for e in db.instances.events(row.id)]
    assert kinds == [EventKind.STATUS, EventKind.READY, EventKind.STATUS]


def test_destroyed_is_idempotent_and_a_reappearance_is_noticed(
    db: Database, clock: ManualClock
) -> None:
    row, _ = db.instances.upsert_from_vast(seen("running"))
    db.instances.mark_ready(row.id)
    clock.advance(1)
    gone = db.instances.mark_destroyed(row.id, reason="user asked")
    assert gone.status is InstanceStatus.DESTROYED and not gone.live
    assert gone.destroyed_at == clock.now() and gone.ready_at is None
    assert db.instances.mark_destroyed(row.id, reason="again", reaped=True) == gone
    assert db.instances.live() == []
    last = db.instances.events(row.id)[-1]
    assert last.kind is EventKind.DESTROYED and last.detail == {"reason": "user asked"}

    clock.advance(1)
    back, [event] = db.instances.upsert_from_vast(seen("running"))
    assert back.live and back.status is InstanceStatus.RUNNING
    assert event.detail["reappeared"] is True
    reaped = db.instances.mark_destroyed(row.id, reason="intent never completed", reaped=True)
    assert db.instances.events(reaped.id)[-1].kind is EventKind.REAPED


def test_record_event_for_actions(db: Database) -> None:
    row, _ = db.instances.upsert_from_vast(seen("running"))
    event = db.instances.record_event(row.id, EventKind.STOPPED, detail={"by": "idle policy"})
    assert event.kind is EventKind.STOPPED and event.to_status == "running"
    assert db.instances.events(row.id)[-1] == event
    with pytest.raises(StateError, match="no instance with local id"):
        db.instances.record_event(row.id + 1000, EventKind.STARTED)


def _three(db: Database) -> list[int]:
    ids = []
    for n in range(3):
        row, _ = db.instances.upsert_from_vast(
            seen("running").model_copy(update={"id": VAST_ID + n})
        )
        ids.append(row.id)
    return ids


def test_claim_due_leases_and_release(db: Database, clock: ManualClock) -> None:
    ids = _three(db)
    first = db.instances.claim_due(30, limit=2)
    assert [r.id for r in first] == ids[:2]
    token = first[0].lock_token
    assert token is not None and all(r.lock_token == token for r in first)
    assert all(r.lock_expires_at == clock.now() + 30 for r in first)
    # Leased rows are skipped until the lease ends.
    assert [r.id for r in db.instances.claim_due(30)] == [ids[2]]
    assert db.instances.claim_due(30) == []

    assert db.instances.release(ids[0], token) is True
    assert db.instances.release(ids[0], token) is False  # no longer ours
    assert db.instances.get(ids[0]).last_processed_at == clock.now()
    # Processed a moment ago: not due again until `every` has passed.
    assert db.instances.claim_due(30, every=60) == []
    clock.advance(31)  # the other leases expired
    second = db.instances.claim_due(30, every=60)
    assert [r.id for r in second] == [ids[1], ids[2]]
    assert db.instances.release(ids[1], token) is False  # expired and taken by another claim
    assert all(db.instances.release(r.id, r.lock_token or "") for r in second)
    clock.advance(30)  # ids[0] was processed 61 s ago, the others 30 s ago
    assert [r.id for r in db.instances.claim_due(30, every=60)] == [ids[0]]


def test_claim_due_skips_destroyed_and_filters_pools(db: Database) -> None:
    ids = _three(db)
    db.instances.mark_destroyed(ids[1], reason="gone")
    assert [r.id for r in db.instances.claim_due(10)] == [ids[0], ids[2]]
    assert db.instances.claim_due(10, pool="studio") == []
    with pytest.raises(StateError, match="positive"):
        db.instances.claim_due(0)
