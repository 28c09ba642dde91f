"""Create intents: recorded before every create, so no contract can go untracked.

The life of an intent (`IntentStatus`): `record` (pending) before the create request is
sent; then `complete` with the new contract id, or `fail` with `cleaned=False` (a contract may
exist: reconcile must find it by label and destroy it) or `cleaned=True` (nothing is left
billing). Recording an intent also inserts its instance row (no Vast id yet), so the instance
is tracked from before it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from comfyfleet.errors import StateError, UsageError
from comfyfleet.models.vast import InstanceStatus, Offer
from comfyfleet.state.records import (
    add_event,
    check_name,
    check_pool,
    intent_from,
    json_snapshot,
    load_intent,
    offer_snapshot,
    optional_text,
)
from comfyfleet.state.rows import EventKind, Intent, IntentStatus, tracking_label
from comfyfleet.state.schema import create_intents, instances

if TYPE_CHECKING:
    from comfyfleet.state.db import Database


class IntentStore:
    """The create intents of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        *,
        pool: str,
        offer: Offer | None,
        request: Mapping[str, Any],
        name: str | None = None,
        image: str | None = None,
        disk_gb: float | None = None,
        intent_id: str | None = None,
        label: str | None = None,
        now: float | None = None,
    ) -> Intent:
        """Record the intent to create an instance, and its instance row, in one transaction.

        `request` is a summary of the create request; it is scrubbed of secrets before it is
        stored. `intent_id` defaults to a new uuid4 and `label` to the tracking label
        `comfyfleet:<pool>:<intent_id>`. A `name` already used by a live instance is a
        UsageError.
        """
        check_pool(pool)
        if name is not None:
            check_name(name)
        at = self._db.now(now)
        iid = intent_id or str(uuid.uuid4())
        tag = label or tracking_label(pool, iid)
        with self._db.transaction() as conn:
            if name is not None:
                taken = conn.execute(
                    select(instances.c.id).where(
                        instances.c.name == name, instances.c.destroyed_at.is_(None)
                    )
                ).first()
                if taken is not None:
                    raise UsageError(
                        f"the name {name!r} is already used by a live instance",
                        hint="choose another name, or rename or destroy that instance",
                    )
            if conn.execute(
                select(create_intents.c.id).where(create_intents.c.label == tag)
            ).first():
                raise StateError(f"a create intent with label {tag!r} exists already")
            conn.execute(
                insert(create_intents).values(
                    id=iid,
                    label=tag,
                    pool=pool,
                    offer_id=offer.id if offer else None,
                    request=json_snapshot(request),
                    status=IntentStatus.PENDING.value,
                    created_at=at,
                )
            )
            conn.execute(
                insert(instances).values(
                    label=tag,
                    name=name,
                    pool=pool,
                    intent_id=iid,
                    status=InstanceStatus.CREATING.value,
                    offer=offer_snapshot(offer),
                    image=image,
                    disk_gb=disk_gb,
                    gpu_name=offer.gpu_name if offer else None,
                    num_gpus=offer.num_gpus if offer else None,
                    machine_id=offer.machine_id if offer else None,
                    dph_total=offer.dph_total if offer else None,
                    storage_dph=offer.storage_dph(disk_gb) if offer and disk_gb else None,
                    ports={},
                    created_at=at,
                    updated_at=at,
                )
            )
            return load_intent(conn, iid)

    def complete(self, intent_id: str, vast_id: int, *, now: float | None = None) -> Intent:
        """The create returned contract `vast_id`: bind it to the intent and its instance.

        Idempotent for the same `vast_id`; a different one, or an intent already marked
        failed/cleaned, is a StateError (reconcile owns such contracts).
        """
        at = self._db.now(now)
        with self._db.transaction() as conn:
            intent = load_intent(conn, intent_id)
            if intent.status is IntentStatus.COMPLETED:
                if intent.vast_id == vast_id:
                    return intent
                raise StateError(
                    f"create intent {intent_id} completed with instance {intent.vast_id}, "
                    f"not {vast_id}"
                )
            if intent.status is not IntentStatus.PENDING:
                raise StateError(
                    f"create intent {intent_id} was already marked {intent.status.value}; "
                    f"instance {vast_id} is left for reconcile to destroy",
                    hint="run any comfyfleet command that talks to Vast: it reconciles first",
                )
            conn.execute(
                update(create_intents)
                .where(create_intents.c.id == intent_id)
                .values(status=IntentStatus.COMPLETED.value, vast_id=vast_id, completed_at=at)
            )
            row = conn.execute(
                select(instances.c.id, instances.c.vast_id).where(
                    instances.c.intent_id == intent_id
                )
            ).first()
            other = conn.execute(
                select(instances.c.id).where(instances.c.vast_id == vast_id)
            ).first()
            if other is not None and (row is None or other.id != row.id):
                raise StateError(
                    f"instance {vast_id} is already tracked by another row (local id {other.id})"
                )
            if row is not None and row.vast_id is None:
                conn.execute(
                    update(instances)
                    .where(instances.c.id == row.id)
                    .values(vast_id=vast_id, updated_at=at)
                )
            if row is not None:
                add_event(
                    conn,
                    row.id,
                    EventKind.CREATED,
                    at,
                    detail={"vast_id": vast_id, "intent_id": intent_id},
                )
            return load_intent(conn, intent_id)

    def fail(
        self,
        intent_id: str,
        error: str,
        *,
        cleaned: bool,
        vast_id: int | None = None,
        now: float | None = None,
    ) -> Intent:
        """The create failed. `cleaned`: nothing is left billing; else reconcile must look.

        `vast_id`: the contract the failed create left, when known. Marking a failed intent
        cleaned later (after reconcile destroyed its contract) is the normal way to settle it;
        a completed intent cannot fail.
        """
        at = self._db.now(now)
        status = IntentStatus.CLEANED if cleaned else IntentStatus.FAILED
        with self._db.transaction() as conn:
            intent = load_intent(conn, intent_id)
            if intent.status is IntentStatus.COMPLETED:
                raise StateError(
                    f"create intent {intent_id} completed (instance {intent.vast_id}); "
                    "destroy the instance instead of failing its intent"
                )
            if intent.status is IntentStatus.CLEANED:
                return intent
            conn.execute(
                update(create_intents)
                .where(create_intents.c.id == intent_id)
                .values(
                    status=status.value,
                    error=optional_text(error),
                    vast_id=vast_id if vast_id is not None else intent.vast_id,
                    completed_at=at,
                )
            )
            row = conn.execute(
                select(instances.c.id, instances.c.status).where(instances.c.intent_id == intent_id)
            ).first()
            if row is not None:
                add_event(conn, row.id, EventKind.ERROR, at, detail={"error": error})
                values: dict[str, Any] = {"updated_at": at}
                if vast_id is not None:
                    values["vast_id"] = vast_id
                if cleaned:
                    values.update(status=InstanceStatus.DESTROYED.value, destroyed_at=at)
                    add_event(
                        conn,
                        row.id,
                        EventKind.DESTROYED,
                        at,
                        from_status=row.status,
                        to_status=InstanceStatus.DESTROYED.value,
                        detail={"reason": "create failed; nothing left billing"},
                    )
                conn.execute(update(instances).where(instances.c.id == row.id).values(**values))
            return load_intent(conn, intent_id)

    def get(self, intent_id: str) -> Intent:
        with self._db.transaction(write=False) as conn:
            return load_intent(conn, intent_id)

    def by_label(self, label: str) -> Intent | None:
        """The intent behind a tracking label (what reconcile asks of a labelled instance)."""
        with self._db.transaction(write=False) as conn:
            row = conn.execute(select(create_intents).where(create_intents.c.label == label))
            found = row.first()
            return None if found is None else intent_from(found._mapping)

    def pending(self) -> list[Intent]:
        """Intents whose create may still be on its way (oldest first)."""
        return self._with_status(IntentStatus.PENDING)

    def unsettled(self) -> list[Intent]:
        """Pending and failed intents: each may have left a contract that nobody tracks yet."""
        return self._with_status(IntentStatus.PENDING, IntentStatus.FAILED)

    def _with_status(self, *statuses: IntentStatus) -> list[Intent]:
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(
                select(create_intents)
                .where(create_intents.c.status.in_([s.value for s in statuses]))
                .order_by(create_intents.c.created_at, create_intents.c.id)
            )
            return [intent_from(r._mapping) for r in rows]
