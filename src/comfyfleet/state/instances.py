"""Instances and their history: what Vast reports, what we did, and leases for the loop.

`upsert_from_vast` is the one way an observation enters: it matches the instance by Vast id,
else by tracking label (a row whose create has not returned yet), else inserts it, and records
each status change as an event. Our own actions go through `mark_ready`, `mark_destroyed`,
`rename` and `record_event`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from comfyfleet.errors import StateError, UsageError
from comfyfleet.models.vast import Instance, InstanceStatus
from comfyfleet.state.records import (
    add_event,
    check_name,
    event_from,
    instance_from,
    load_instance,
    optional_text,
)
from comfyfleet.state.refs import resolve
from comfyfleet.state.rows import (
    MANUAL_POOL,
    EventKind,
    InstanceEvent,
    InstanceRow,
    label_pool,
    tracking_tag,
)
from comfyfleet.state.schema import instance_events, instances

if TYPE_CHECKING:
    from comfyfleet.state.db import Database

COMFY_PROXY_PORT = 8188  # the container port of ComfyUI's token proxy on Vast's image


def _observed(inst: Instance, at: float) -> dict[str, Any]:
    """The columns an observation from Vast sets (prices, endpoints, raw status)."""
    return {
        "actual_status": inst.actual_status,
        "intended_status": inst.intended_status,
        "status_msg": optional_text(inst.status_msg),
        "image": inst.image_uuid,
        "disk_gb": inst.disk_space,
        "gpu_name": inst.gpu_name,
        "num_gpus": inst.num_gpus,
        "machine_id": inst.machine_id,
        "dph_total": inst.dph_total,
        "storage_dph": inst.storage_total_cost,
        "public_ip": inst.public_ipaddr or None,
        "ssh_host": inst.ssh_host,
        "ssh_port": inst.ssh_port,
        "ports": dict(inst.ports),
        "comfy_port": inst.host_port(COMFY_PROXY_PORT),
        "last_seen_at": at,
    }


def _status_times(new: InstanceStatus, at: float) -> dict[str, Any]:
    """Timestamps a status change sets: ready only holds while running."""
    values: dict[str, Any] = {}
    if new is InstanceStatus.RUNNING:
        values["running_at"] = at
    else:
        values["ready_at"] = None
    if new is InstanceStatus.STOPPED:
        values["stopped_at"] = at
    return values


class InstanceStore:
    """The instances of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upsert_from_vast(
        self, inst: Instance, *, now: float | None = None
    ) -> tuple[InstanceRow, list[InstanceEvent]]:
        """Record what Vast reports about `inst`; return the row and the events it caused.

        A status change is a `status` event (and sets running_at / stopped_at, clears
        ready_at when it stops running); the first sighting of an unknown instance is a
        `status` event from None. An instance marked destroyed that Vast still lists comes
        back to life (it is billing: it must be seen).
        """
        at = self._db.now(now)
        new = inst.status
        observed = _observed(inst, at)
        with self._db.transaction() as conn:
            row = self._match(conn, inst)
            if row is None:
                return self._insert_seen(conn, inst, new, observed, at)
            events: list[InstanceEvent] = []
            values = dict(observed)
            detail: dict[str, Any] = {
                "actual_status": inst.actual_status,
                "intended_status": inst.intended_status,
                "status_msg": inst.status_msg,
            }
            if row.vast_id is None:
                values["vast_id"] = inst.id
                detail["bound_by_label"] = True
            if not row.label and inst.label:
                values["label"] = tracking_tag(inst.label) or inst.label
            if row.destroyed_at is not None:
                values["destroyed_at"] = None
                detail["reappeared"] = True
                if row.name is not None and self._name_taken(conn, row.name, row.id):
                    values["name"] = None
            if new is not row.status or row.destroyed_at is not None or row.vast_id is None:
                values.update(_status_times(new, at), status=new.value)
                events.append(
                    add_event(
                        conn,
                        row.id,
                        EventKind.STATUS,
                        at,
                        from_status=row.status.value,
                        to_status=new.value,
                        detail=detail,
                    )
                )
            changed = any(getattr(row, k) != v for k, v in observed.items() if k != "last_seen_at")
            if events or changed:
                values["updated_at"] = at
            conn.execute(update(instances).where(instances.c.id == row.id).values(**values))
            return load_instance(conn, row.id), events

    def _match(self, conn: Connection, inst: Instance) -> InstanceRow | None:
        found = conn.execute(select(instances).where(instances.c.vast_id == inst.id)).first()
        tag = tracking_tag(inst.label)
        if found is None and tag:
            found = conn.execute(
                select(instances)
                .where(
                    instances.c.label == tag,
                    instances.c.vast_id.is_(None),
                    instances.c.destroyed_at.is_(None),
                )
                .order_by(instances.c.id)
            ).first()
        return None if found is None else instance_from(found._mapping)

    def _insert_seen(
        self,
        conn: Connection,
        inst: Instance,
        new: InstanceStatus,
        observed: Mapping[str, Any],
        at: float,
    ) -> tuple[InstanceRow, list[InstanceEvent]]:
        new_id = conn.execute(
            insert(instances)
            .values(
                vast_id=inst.id,
                label=tracking_tag(inst.label) or inst.label or "",
                pool=label_pool(inst.label) or MANUAL_POOL,
                status=new.value,
                created_at=at,
                updated_at=at,
                **observed,
                **_status_times(new, at),
            )
            .returning(instances.c.id)
        ).scalar_one()
        event = add_event(
            conn,
            new_id,
            EventKind.STATUS,
            at,
            to_status=new.value,
            detail={"first_seen": True, "vast_id": inst.id, "actual_status": inst.actual_status},
        )
        return load_instance(conn, new_id), [event]

    @staticmethod
    def _name_taken(conn: Connection, name: str, except_id: int) -> bool:
        return (
            conn.execute(
                select(instances.c.id).where(
                    instances.c.name == name,
                    instances.c.destroyed_at.is_(None),
                    instances.c.id != except_id,
                )
            ).first()
            is not None
        )

    def mark_ready(self, instance_id: int, *, now: float | None = None) -> InstanceRow:
        """ComfyUI answered through the instance's proxy: set ready_at, record `ready`."""
        at = self._db.now(now)
        with self._db.transaction() as conn:
            row = load_instance(conn, instance_id)
            conn.execute(
                update(instances)
                .where(instances.c.id == instance_id)
                .values(ready_at=at, updated_at=at)
            )
            add_event(conn, instance_id, EventKind.READY, at, to_status=row.status.value)
            return load_instance(conn, instance_id)

    def mark_destroyed(
        self,
        instance_id: int,
        *,
        reason: str,
        reaped: bool = False,
        now: float | None = None,
    ) -> InstanceRow:
        """The instance is gone (we destroyed it, or Vast no longer lists it). Idempotent.

        `reaped`: reconcile destroyed it because its create intent never completed.
        """
        at = self._db.now(now)
        with self._db.transaction() as conn:
            row = load_instance(conn, instance_id)
            if row.destroyed_at is not None:
                return row
            conn.execute(
                update(instances)
                .where(instances.c.id == instance_id)
                .values(
                    status=InstanceStatus.DESTROYED.value,
                    destroyed_at=at,
                    ready_at=None,
                    updated_at=at,
                    lock_token=None,
                    lock_expires_at=None,
                )
            )
            add_event(
                conn,
                instance_id,
                EventKind.REAPED if reaped else EventKind.DESTROYED,
                at,
                from_status=row.status.value,
                to_status=InstanceStatus.DESTROYED.value,
                detail={"reason": reason},
            )
            return load_instance(conn, instance_id)

    def record_event(
        self,
        instance_id: int,
        kind: EventKind,
        *,
        detail: Mapping[str, Any] | None = None,
        now: float | None = None,
    ) -> InstanceEvent:
        """Record an action on an instance (stopped, started, adopted, error, …)."""
        at = self._db.now(now)
        with self._db.transaction() as conn:
            row = load_instance(conn, instance_id)
            return add_event(conn, instance_id, kind, at, to_status=row.status.value, detail=detail)

    def rename(self, ref: str, new_name: str, *, now: float | None = None) -> InstanceRow:
        """Give the instance `ref` (see `find`) the name `new_name`; the label is kept."""
        check_name(new_name)
        at = self._db.now(now)
        with self._db.transaction() as conn:
            row = resolve(conn, ref)
            if row.destroyed_at is not None:
                raise UsageError(f"instance {row.display_name} is destroyed; it cannot be renamed")
            if row.name == new_name:
                return row
            if self._name_taken(conn, new_name, row.id):
                raise UsageError(
                    f"the name {new_name!r} is already used by a live instance",
                    hint="choose another name, or rename or destroy that instance first",
                )
            conn.execute(
                update(instances)
                .where(instances.c.id == row.id)
                .values(name=new_name, updated_at=at)
            )
            add_event(
                conn,
                row.id,
                EventKind.RENAMED,
                at,
                detail={"from": row.name, "to": new_name, "label": row.label},
            )
            return load_instance(conn, row.id)

    def find(self, ref: str) -> InstanceRow:
        """The instance a user means by `ref`: a name, a Vast id, or a local id (`#12` or 12).

        Live instances win over destroyed ones; no match or more than one is a UsageError
        that lists the candidates.
        """
        with self._db.transaction(write=False) as conn:
            return resolve(conn, ref)

    def get(self, instance_id: int) -> InstanceRow:
        with self._db.transaction(write=False) as conn:
            return load_instance(conn, instance_id)

    def by_vast_id(self, vast_id: int) -> InstanceRow | None:
        with self._db.transaction(write=False) as conn:
            found = conn.execute(select(instances).where(instances.c.vast_id == vast_id)).first()
            return None if found is None else instance_from(found._mapping)

    def live(self, *, pool: str | None = None) -> list[InstanceRow]:
        """Instances not known to be destroyed (those still being created included)."""
        query = select(instances).where(instances.c.destroyed_at.is_(None))
        if pool is not None:
            query = query.where(instances.c.pool == pool)
        with self._db.transaction(write=False) as conn:
            return [instance_from(r._mapping) for r in conn.execute(query.order_by(instances.c.id))]

    def all(self, *, pool: str | None = None) -> list[InstanceRow]:
        """Every instance ever tracked, destroyed ones included, oldest first."""
        query = select(instances)
        if pool is not None:
            query = query.where(instances.c.pool == pool)
        with self._db.transaction(write=False) as conn:
            return [instance_from(r._mapping) for r in conn.execute(query.order_by(instances.c.id))]

    def events(self, instance_id: int) -> list[InstanceEvent]:
        """The instance's history, oldest first."""
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(
                select(instance_events)
                .where(instance_events.c.instance_id == instance_id)
                .order_by(instance_events.c.at, instance_events.c.id)
            )
            return [event_from(r._mapping) for r in rows]

    def claim_due(
        self,
        lease_seconds: float,
        *,
        every: float = 0.0,
        limit: int = 50,
        pool: str | None = None,
        now: float | None = None,
    ) -> list[InstanceRow]:
        """Lease live instances due for processing (not processed for `every` seconds).

        Rows leased by someone else and not expired are skipped. Each returned row carries
        the `lock_token` to pass to `release`. Least recently processed first.
        """
        if lease_seconds <= 0:
            raise StateError(f"a lease must last a positive time, got {lease_seconds}")
        at = self._db.now(now)
        token = str(uuid.uuid4())
        c = instances.c
        query = select(c.id).where(
            c.destroyed_at.is_(None),
            or_(c.lock_expires_at.is_(None), c.lock_expires_at <= at),
            or_(c.last_processed_at.is_(None), c.last_processed_at <= at - every),
        )
        if pool is not None:
            query = query.where(c.pool == pool)
        query = query.order_by(c.last_processed_at.is_not(None), c.last_processed_at, c.id)
        with self._db.transaction() as conn:
            ids = list(conn.execute(query.limit(limit)).scalars())
            if not ids:
                return []
            conn.execute(
                update(instances)
                .where(c.id.in_(ids))
                .values(lock_token=token, lock_expires_at=at + lease_seconds)
            )
            rows = conn.execute(select(instances).where(c.id.in_(ids)))
            by_id = {r.id: instance_from(r._mapping) for r in rows}
            return [by_id[i] for i in ids]

    def release(
        self, instance_id: int, token: str, *, processed: bool = True, now: float | None = None
    ) -> bool:
        """End a lease taken by `claim_due`; False when it was no longer ours (expired, taken)."""
        at = self._db.now(now)
        values: dict[str, Any] = {"lock_token": None, "lock_expires_at": None}
        if processed:
            values["last_processed_at"] = at
        with self._db.transaction() as conn:
            result = conn.execute(
                update(instances)
                .where(and_(instances.c.id == instance_id, instances.c.lock_token == token))
                .values(**values)
            )
            return result.rowcount == 1
