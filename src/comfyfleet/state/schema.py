"""The tables, as SQLAlchemy Core metadata.

This is the schema the migrations in `migrations/versions/` build; a test compares the two on
SQLite and PostgreSQL, so a change here needs a new migration. Times are epoch seconds
(double precision). Statuses are plain strings (values of `InstanceStatus`, `IntentStatus`,
`EventKind`), not database enums, so a new value needs no migration.

Designed for what comes next: pools (`pool`, per-pool indexes), a reconcile loop that leases
rows (`last_processed_at`, `lock_token`, `lock_expires_at`), jobs and costs (prices and the
running/stopped/destroyed times that bound billing).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

# Constraint names are fixed so that later migrations (and SQLite batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")

create_intents = Table(
    "create_intents",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4 text
    Column("label", String(256), nullable=False, unique=True),
    Column("pool", String(64), nullable=False),
    Column("offer_id", BigInteger, nullable=True),
    Column("request", Json, nullable=False),  # scrubbed summary of the create request
    Column("status", String(16), nullable=False),
    Column("vast_id", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("completed_at", Double, nullable=True),
    Index(None, "status"),
)

instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vast_id", BigInteger, nullable=True, unique=True),
    Column("label", String(256), nullable=False),
    Column("name", String(64), nullable=True),
    Column("pool", String(64), nullable=False),
    Column("intent_id", String(36), ForeignKey("create_intents.id"), nullable=True),
    Column("status", String(16), nullable=False),
    Column("actual_status", String(32), nullable=True),
    Column("intended_status", String(32), nullable=True),
    Column("status_msg", Text, nullable=True),
    Column("offer", Json, nullable=True),
    Column("image", String(512), nullable=True),
    Column("disk_gb", Double, nullable=True),
    Column("gpu_name", String(64), nullable=True),
    Column("num_gpus", Integer, nullable=True),
    Column("machine_id", BigInteger, nullable=True),
    Column("dph_total", Double, nullable=True),
    Column("storage_dph", Double, nullable=True),
    Column("public_ip", String(64), nullable=True),
    Column("ssh_host", String(255), nullable=True),
    Column("ssh_port", Integer, nullable=True),
    Column("ports", Json, nullable=False),
    Column("comfy_port", Integer, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("running_at", Double, nullable=True),
    Column("ready_at", Double, nullable=True),
    Column("stopped_at", Double, nullable=True),
    Column("destroyed_at", Double, nullable=True),
    Column("last_seen_at", Double, nullable=True),
    Column("updated_at", Double, nullable=False),
    Column("last_processed_at", Double, nullable=True),
    Column("lock_token", String(36), nullable=True),
    Column("lock_expires_at", Double, nullable=True),
    Index(None, "label"),
    Index(None, "intent_id"),
    Index(None, "pool", "destroyed_at"),
    # A user's name is unique among live instances; a destroyed one frees it.
    Index(
        "uq_instances_live_name",
        "name",
        unique=True,
        sqlite_where=text("destroyed_at IS NULL"),
        postgresql_where=text("destroyed_at IS NULL"),
    ),
)

instance_events = Table(
    "instance_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "instance_id",
        Integer,
        ForeignKey("instances.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", Double, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=True),
    Column("detail", Json, nullable=False),
    Index(None, "instance_id", "at"),
)
