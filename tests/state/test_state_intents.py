"""Create intents: recorded before the create, then completed, failed or cleaned."""

from __future__ import annotations

import uuid

import pytest

from comfyfleet.errors import StateError, UsageError
from comfyfleet.models.vast import InstanceStatus, Offer
from comfyfleet.state.db import Database
from comfyfleet.state.rows import EventKind, IntentStatus, label_pool, tracking_label
from comfyfleet.util.clock import ManualClock


def test_record_tracks_the_instance_before_it_exists(
    db: Database, offer: Offer, clock: ManualClock
) -> None:
    t0 = clock.now()
    intent = db.intents.record(
        pool="manual", offer=offer, request={"image": "vastai/comfy"}, name="artist", disk_gb=40
    )
    assert intent.status is IntentStatus.PENDING
    assert str(uuid.UUID(intent.id)) == intent.id
    assert intent.label == f"comfyfleet:manual:{intent.id}" == tracking_label("manual", intent.id)
    assert label_pool(intent.label) == "manual"
    assert intent.offer_id == offer.id
    assert intent.created_at == t0
    assert intent.vast_id is None and intent.completed_at is None

    [row] = db.instances.live()
    assert row.vast_id is None
    assert row.intent_id == intent.id and row.label == intent.label and row.name == "artist"
    assert row.status is InstanceStatus.CREATING
    assert row.offer == offer
    assert row.gpu_name == "RTX 4090" and row.num_gpus == 1 and row.machine_id == 4242
    assert row.dph_total == pytest.approx(0.412)
    assert row.storage_dph == pytest.approx(0.15 * 40 / 720)
    assert db.intents.pending() == [intent] == db.intents.unsettled()
    assert db.intents.by_label(intent.label) == intent


def test_complete_binds_the_contract(db: Database, offer: Offer, clock: ManualClock) -> None:
    t0 = clock.now()
    intent = db.intents.record(pool="studio", offer=offer, request={})
    clock.advance(3)
    done = db.intents.complete(intent.id, 31_000_123)
    assert done.status is IntentStatus.COMPLETED
    assert done.vast_id == 31_000_123
    assert done.completed_at == t0 + 3
    assert db.intents.complete(intent.id, 31_000_123) == done  # idempotent
    with pytest.raises(StateError, match="31000999"):
        db.intents.complete(intent.id, 31_000_999)

    row = db.instances.by_vast_id(31_000_123)
    assert row is not None and row.intent_id == intent.id and row.pool == "studio"
    [created] = db.instances.events(row.id)
    assert created.kind is EventKind.CREATED
    assert created.detail == {"vast_id": 31_000_123, "intent_id": intent.id}
    assert db.intents.pending() == [] == db.intents.unsettled()
    with pytest.raises(StateError, match="completed"):
        db.intents.fail(intent.id, "late failure", cleaned=True)


def test_failed_create_that_left_a_contract_stays_unsettled(
    db: Database, offer: Offer, clock: ManualClock
) -> None:
    t0 = clock.now()
    intent = db.intents.record(pool="manual", offer=offer, request={})
    failed = db.intents.fail(intent.id, "HTTP 500 after create", cleaned=False, vast_id=777)
    assert failed.status is IntentStatus.FAILED
    assert failed.vast_id == 777 and failed.error == "HTTP 500 after create"
    assert db.intents.pending() == []
    assert db.intents.unsettled() == [failed]
    # The row still tracks the contract so reconcile can destroy it.
    row = db.instances.by_vast_id(777)
    assert row is not None and row.live
    with pytest.raises(StateError, match="already marked failed"):
        db.intents.complete(intent.id, 777)

    clock.advance(60)
    cleaned = db.intents.fail(intent.id, "destroyed by reconcile", cleaned=True)
    assert cleaned.status is IntentStatus.CLEANED
    assert cleaned.vast_id == 777
    assert db.intents.unsettled() == []
    assert db.intents.fail(intent.id, "again", cleaned=True) == cleaned  # idempotent
    gone = db.instances.get(row.id)
    assert gone.status is InstanceStatus.DESTROYED and gone.destroyed_at == t0 + 60
    kinds = [e.kind for e in db.instances.events(row.id)]
    assert kinds == [EventKind.ERROR, EventKind.ERROR, EventKind.DESTROYED]


def test_create_that_failed_cleanly_frees_the_name(db: Database, offer: Offer) -> None:
    first = db.intents.record(pool="manual", offer=offer, request={}, name="box")
    with pytest.raises(UsageError, match="already used"):
        db.intents.record(pool="manual", offer=offer, request={}, name="box")
    db.intents.fail(first.id, "offer gone", cleaned=True)
    second = db.intents.record(pool="manual", offer=offer, request={}, name="box")
    assert db.instances.find("box").intent_id == second.id


def test_bad_names_and_unknown_intents(db: Database, offer: Offer) -> None:
    with pytest.raises(UsageError, match="invalid pool"):
        db.intents.record(pool="a:b", offer=offer, request={})
    with pytest.raises(UsageError, match="invalid instance name"):
        db.intents.record(pool="manual", offer=offer, request={}, name="12345")
    with pytest.raises(StateError, match="no create intent"):
        db.intents.get("00000000-0000-0000-0000-000000000000")
    assert db.intents.by_label("comfyfleet:manual:nope") is None
    assert db.instances.live() == []  # nothing half-written by the refused calls
