"""Initial schema: create_intents, instances, instance_events.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "create_intents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("offer_id", sa.BigInteger(), nullable=True),
        sa.Column("request", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("vast_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("completed_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_create_intents"),
        sa.UniqueConstraint("label", name="uq_create_intents_label"),
    )
    op.create_index("ix_create_intents_status", "create_intents", ["status"])

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("vast_id", sa.BigInteger(), nullable=True),
        sa.Column("label", sa.String(256), nullable=False),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("intent_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actual_status", sa.String(32), nullable=True),
        sa.Column("intended_status", sa.String(32), nullable=True),
        sa.Column("status_msg", sa.Text(), nullable=True),
        sa.Column("offer", _json(), nullable=True),
        sa.Column("image", sa.String(512), nullable=True),
        sa.Column("disk_gb", sa.Double(), nullable=True),
        sa.Column("gpu_name", sa.String(64), nullable=True),
        sa.Column("num_gpus", sa.Integer(), nullable=True),
        sa.Column("machine_id", sa.BigInteger(), nullable=True),
        sa.Column("dph_total", sa.Double(), nullable=True),
        sa.Column("storage_dph", sa.Double(), nullable=True),
        sa.Column("public_ip", sa.String(64), nullable=True),
        sa.Column("ssh_host", sa.String(255), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("ports", _json(), nullable=False),
        sa.Column("comfy_port", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("running_at", sa.Double(), nullable=True),
        sa.Column("ready_at", sa.Double(), nullable=True),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.Column("destroyed_at", sa.Double(), nullable=True),
        sa.Column("last_seen_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("last_processed_at", sa.Double(), nullable=True),
        sa.Column("lock_token", sa.String(36), nullable=True),
        sa.Column("lock_expires_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.UniqueConstraint("vast_id", name="uq_instances_vast_id"),
        sa.ForeignKeyConstraint(
            ["intent_id"], ["create_intents.id"], name="fk_instances_intent_id_create_intents"
        ),
    )
    op.create_index("ix_instances_label", "instances", ["label"])
    op.create_index("ix_instances_intent_id", "instances", ["intent_id"])
    op.create_index("ix_instances_pool_destroyed_at", "instances", ["pool", "destroyed_at"])
    op.create_index(
        "uq_instances_live_name",
        "instances",
        ["name"],
        unique=True,
        sqlite_where=sa.text("destroyed_at IS NULL"),
        postgresql_where=sa.text("destroyed_at IS NULL"),
    )

    op.create_table(
        "instance_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instance_events"),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name="fk_instance_events_instance_id_instances",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_instance_events_instance_id_at", "instance_events", ["instance_id", "at"])


def downgrade() -> None:
    op.drop_table("instance_events")
    op.drop_table("instances")
    op.drop_table("create_intents")
