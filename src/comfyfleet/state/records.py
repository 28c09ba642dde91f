"""Table rows to dataclasses, and the one writer of instance events.

Shared by `intents.py` and `instances.py`; every JSON value written goes through `scrub`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, RowMapping, insert, select

from comfyfleet.errors import StateError, UsageError
from comfyfleet.models.vast import Offer
from comfyfleet.state.rows import (
    EventKind,
    InstanceEvent,
    InstanceRow,
    Intent,
    IntentStatus,
    parse_kind,
    parse_status,
)
from comfyfleet.state.schema import create_intents, instance_events, instances
from comfyfleet.state.scrub import scrub, scrub_text

# A user's name for an instance: starts with a letter (so it never reads as an id), no spaces.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """`name` if it can name an instance, else UsageError."""
    if not _NAME.match(name):
        raise UsageError(
            f"invalid instance name {name!r}",
            hint="start with a letter; then letters, digits, '.', '_' or '-' (64 at most)",
        )
    return name


def check_pool(pool: str) -> str:
    """`pool` if it can name a pool (it goes into the tracking label), else UsageError."""
    if not _POOL.match(pool):
        raise UsageError(
            f"invalid pool name {pool!r}",
            hint="letters, digits, '.', '_' or '-' (64 at most), no ':'",
        )
    return pool


def json_snapshot(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A scrubbed, JSON-ready copy of a mapping."""
    cleaned = scrub(dict(value or {}))
    assert isinstance(cleaned, dict)
    return cleaned


def optional_text(value: str | None) -> str | None:
    return None if value is None else scrub_text(value)


def offer_snapshot(offer: Offer | None) -> dict[str, Any] | None:
    return None if offer is None else json_snapshot(offer.model_dump(mode="json"))


def _offer(value: Any) -> Offer | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return Offer.model_validate(value)
    except ValidationError:
        # A snapshot from an older Offer model: the row stays usable without it.
        return None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def intent_from(row: RowMapping) -> Intent:
    return Intent(
        id=row["id"],
        label=row["label"],
        pool=row["pool"],
        offer_id=row["offer_id"],
        request=dict(row["request"] or {}),
        status=IntentStatus(row["status"]),
        vast_id=row["vast_id"],
        error=row["error"],
        created_at=float(row["created_at"]),
        completed_at=_float(row["completed_at"]),
    )


def instance_from(row: RowMapping) -> InstanceRow:
    ports = row["ports"] if isinstance(row["ports"], Mapping) else {}
    return InstanceRow(
        id=row["id"],
        vast_id=row["vast_id"],
        label=row["label"],
        name=row["name"],
        pool=row["pool"],
        intent_id=row["intent_id"],
        status=parse_status(row["status"]),
        actual_status=row["actual_status"],
        intended_status=row["intended_status"],
        status_msg=row["status_msg"],
        offer=_offer(row["offer"]),
        image=row["image"],
        disk_gb=_float(row["disk_gb"]),
        gpu_name=row["gpu_name"],
        num_gpus=row["num_gpus"],
        machine_id=row["machine_id"],
        dph_total=_float(row["dph_total"]),
        storage_dph=_float(row["storage_dph"]),
        public_ip=row["public_ip"],
        ssh_host=row["ssh_host"],
        ssh_port=row["ssh_port"],
        ports={str(k): int(v) for k, v in ports.items()},
        comfy_port=row["comfy_port"],
        created_at=float(row["created_at"]),
        running_at=_float(row["running_at"]),
        ready_at=_float(row["ready_at"]),
        stopped_at=_float(row["stopped_at"]),
        destroyed_at=_float(row["destroyed_at"]),
        last_seen_at=_float(row["last_seen_at"]),
        updated_at=float(row["updated_at"]),
        last_processed_at=_float(row["last_processed_at"]),
        lock_token=row["lock_token"],
        lock_expires_at=_float(row["lock_expires_at"]),
    )


def event_from(row: RowMapping) -> InstanceEvent:
    return InstanceEvent(
        id=row["id"],
        instance_id=row["instance_id"],
        at=float(row["at"]),
        kind=parse_kind(row["kind"]),
        from_status=row["from_status"],
        to_status=row["to_status"],
        detail=dict(row["detail"] or {}),
    )


def load_intent(conn: Connection, intent_id: str) -> Intent:
    row = conn.execute(select(create_intents).where(create_intents.c.id == intent_id)).first()
    if row is None:
        raise StateError(f"no create intent {intent_id} in the state database")
    return intent_from(row._mapping)


def load_instance(conn: Connection, instance_id: int) -> InstanceRow:
    row = conn.execute(select(instances).where(instances.c.id == instance_id)).first()
    if row is None:
        raise StateError(f"no instance with local id {instance_id} in the state database")
    return instance_from(row._mapping)


def add_event(
    conn: Connection,
    instance_id: int,
    kind: EventKind,
    at: float,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> InstanceEvent:
    """Append one event to an instance's history (detail scrubbed) and return it."""
    row = conn.execute(
        insert(instance_events)
        .values(
            instance_id=instance_id,
            at=at,
            kind=kind.value,
            from_status=from_status,
            to_status=to_status,
            detail=json_snapshot(detail),
        )
        .returning(*instance_events.c)
    ).one()
    return event_from(row._mapping)
