"""Alembic's entry point: run the migrations on the connection `migrate.py` hands over.

Only online migrations on a caller-owned connection are supported: the caller holds the write
lock and commits, so the whole upgrade is one transaction.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from comfyfleet.errors import StateError
from comfyfleet.state.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: later revisions use batch mode (copy and rename).
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise StateError("the state migrations run only through comfyfleet.state.migrate")
_run(connection)
