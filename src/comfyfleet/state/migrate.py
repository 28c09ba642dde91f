"""Apply the Alembic migrations shipped in `migrations/` programmatically.

Every open checks the database's revision against the newest one shipped; only when it lags
does it take the write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the write advisory lock,
see `db.py`) and upgrade inside that one transaction, so processes opening a fresh database at
the same moment queue up and the later ones find nothing left to do. DDL is transactional on
both backends, so a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from comfyfleet.errors import StateError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: The newest revision in `migrations/versions` (a test holds it equal to Alembic's head). An
#: open whose database is already there needs no Alembic at all, which keeps start-up fast.
SHIPPED_HEAD = "0001"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the shipped migrations; `env.py` runs them on `connection`."""
    from alembic.config import Config

    config = Config()
    # Options go through ConfigParser interpolation: a "%" in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of comfyfleet ships."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StateError("no database migrations shipped with this comfyfleet")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _stamped_revision(connection: Connection) -> str | None:
    """The revision in `alembic_version`, read with plain SQL (None if unreadable)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def _check_known(revision: str | None, where: str) -> None:
    from alembic.util.exc import CommandError

    if revision is None:
        return
    try:
        known = _scripts().get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise StateError(
            f"{where} is at schema revision {revision!r}, which this comfyfleet does not know: "
            "a newer comfyfleet wrote it",
            hint="upgrade comfyfleet, or point COMFYFLEET_DB_URL at another database",
        )


def upgrade_to_head(
    read: Callable[[], AbstractContextManager[Connection]],
    write: Callable[[], AbstractContextManager[Connection]],
    where: str,
) -> str:
    """Bring the database to the shipped head; return the revision it ends at.

    `read` and `write` open transactions the way the database does everywhere else (write:
    holding the write lock); the upgrade runs in one write transaction.
    """
    with read() as conn:
        if _stamped_revision(conn) == SHIPPED_HEAD:
            return SHIPPED_HEAD
        current = current_revision(conn)
    head = head_revision()
    _check_known(current, where)
    if current == head:
        return head
    with write() as conn:
        # Another process may have upgraded while we waited for the lock: ask again.
        current = current_revision(conn)
        _check_known(current, where)
        if current != head:
            from alembic import command
            from alembic.util.exc import CommandError

            try:
                command.upgrade(alembic_config(conn), "head")
            except CommandError as exc:
                raise StateError(
                    f"cannot upgrade {where} from revision {current} to {head}: {exc}",
                    hint="nothing was changed (the upgrade runs in one transaction); "
                    "report this error",
                ) from None
    return head
