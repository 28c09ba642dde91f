"""What a user types for an instance (name, Vast id, local id) and renaming it."""

from __future__ import annotations

import pytest

from comfyfleet.errors import UsageError
from comfyfleet.models.vast import Instance, Offer
from comfyfleet.state.db import Database
from comfyfleet.state.rows import EventKind, InstanceRow


def _created(db: Database, offer: Offer, name: str | None, vast_id: int) -> InstanceRow:
    intent = db.intents.record(pool="manual", offer=offer, request={}, name=name)
    db.intents.complete(intent.id, vast_id)
    row = db.instances.by_vast_id(vast_id)
    assert row is not None
    return row


def test_find_by_name_vast_id_and_local_id(db: Database, offer: Offer) -> None:
    a = _created(db, offer, "artist", 31_000_001)
    b = _created(db, offer, None, 31_000_002)
    assert db.instances.find("artist") == a
    assert db.instances.find(" artist ") == a
    assert db.instances.find("31000002") == b
    assert db.instances.find("vast:31000001") == a
    assert db.instances.find(f"#{b.id}") == b
    assert db.instances.find(str(b.id)) == b  # no Vast id collides with it


def test_unknown_reference_lists_the_candidates(db: Database, offer: Offer) -> None:
    _created(db, offer, "artist", 31_000_001)
    _created(db, offer, None, 31_000_002)
    with pytest.raises(UsageError) as caught:
        db.instances.find("painter")
    message = caught.value.message
    assert "'painter'" in message
    assert "name artist" in message and "vast id 31000001" in message
    assert "vast id 31000002" in message
    with pytest.raises(UsageError):
        db.instances.find("")


def test_colliding_ids_are_ambiguous(db: Database, offer: Offer) -> None:
    first = _created(db, offer, "one", 31_000_001)
    # A (made-up) Vast id equal to the first row's local id.
    second, _ = db.instances.upsert_from_vast(Instance(id=first.id, actual_status="running"))
    with pytest.raises(UsageError) as caught:
        db.instances.find(str(first.id))
    message = caught.value.message
    assert "matches 2 instances" in message
    assert f"#{first.id}" in message and f"#{second.id}" in message
    assert "#<local id>" in (caught.value.hint or "")
    assert db.instances.find(f"#{first.id}") == first
    assert db.instances.find(f"vast:{first.id}") == second


def test_live_instances_win_over_destroyed_ones(db: Database, offer: Offer) -> None:
    old = _created(db, offer, "box", 31_000_001)
    db.instances.mark_destroyed(old.id, reason="done")
    assert db.instances.find("box").id == old.id  # only a destroyed one: still found
    new = _created(db, offer, "box", 31_000_002)
    assert db.instances.find("box") == new
    db.instances.mark_destroyed(new.id, reason="done")
    with pytest.raises(UsageError, match="matches 2 instances"):
        db.instances.find("box")


def test_rename_keeps_the_label(db: Database, offer: Offer) -> None:
    row = _created(db, offer, "artist", 31_000_001)
    renamed = db.instances.rename("31000001", "painter")
    assert renamed.name == "painter"
    assert renamed.label == row.label and renamed.vast_id == row.vast_id
    assert renamed.intent_id == row.intent_id
    assert db.instances.find("painter") == renamed
    with pytest.raises(UsageError):
        db.instances.find("artist")
    event = db.instances.events(row.id)[-1]
    assert event.kind is EventKind.RENAMED
    assert event.detail == {"from": "artist", "to": "painter", "label": row.label}
    assert db.instances.rename("painter", "painter") == renamed  # no-op, no event
    assert db.instances.events(row.id)[-1] == event


def test_rename_refusals(db: Database, offer: Offer) -> None:
    a = _created(db, offer, "artist", 31_000_001)
    _created(db, offer, "other", 31_000_002)
    with pytest.raises(UsageError, match="already used"):
        db.instances.rename("artist", "other")
    with pytest.raises(UsageError, match="invalid instance name"):
        db.instances.rename("artist", "4090")
    with pytest.raises(UsageError, match="invalid instance name"):
        db.instances.rename("artist", "has space")
    db.instances.mark_destroyed(a.id, reason="done")
    with pytest.raises(UsageError, match="destroyed"):
        db.instances.rename(f"#{a.id}", "again")
    # A destroyed instance's name is free for a live one.
    assert db.instances.rename("other", "artist").name == "artist"
