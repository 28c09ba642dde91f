"""State adapter: the SQL database of instances, create intents and their events.

    db = open_database(os.environ.get("COMFYFLEET_DB_URL"), data_dir=settings.data_dir(),
                       clock=clock)
    intent = db.intents.record(pool="manual", offer=offer, request=summary, name="artist")
    ...create on Vast...
    db.intents.complete(intent.id, vast_id)
    row, events = db.instances.upsert_from_vast(instance)

Rows are the frozen dataclasses of `rows.py`; every failure is an `errors.StateError` (or a
`UsageError` for bad names and references). SQLAlchemy and Alembic are imported only when a
database is opened, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comfyfleet.state.rows import (
    MANUAL_POOL,
    EventKind,
    InstanceEvent,
    InstanceRow,
    Intent,
    IntentStatus,
    label_pool,
    tracking_label,
)

if TYPE_CHECKING:
    from comfyfleet.state.db import Database, open_database

__all__ = [
    "MANUAL_POOL",
    "Database",
    "EventKind",
    "InstanceEvent",
    "InstanceRow",
    "Intent",
    "IntentStatus",
    "label_pool",
    "open_database",
    "tracking_label",
]


def __getattr__(name: str) -> Any:
    if name in {"Database", "open_database"}:
        from comfyfleet.state import db

        return getattr(db, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
