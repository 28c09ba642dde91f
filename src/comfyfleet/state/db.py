"""Open the state database: SQLite by default, PostgreSQL by URL, migrated on open.

SQLite lives at `<data_dir>/comfyfleet.db` in WAL mode (readers never wait for the writer),
with foreign keys on and a busy timeout, so two CLI processes can use it at once. Every
transaction is short. Write transactions are serialised on both backends: SQLite starts them
with `BEGIN IMMEDIATE` (the write lock is taken up front, so a read-then-write transaction can
never fail half-way with "database is locked"), PostgreSQL takes a transaction-scoped advisory
lock. That makes read-then-write code in `intents.py` / `instances.py` race-free without
dialect-specific SQL; comfyfleet writes little, so one writer at a time costs nothing.

Nothing from SQLAlchemy leaves this package: errors become `errors.StateError`, rows become
the frozen dataclasses of `rows.py`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from comfyfleet.errors import StateError
from comfyfleet.state.failures import describe, translated
from comfyfleet.state.instances import InstanceStore
from comfyfleet.state.intents import IntentStore
from comfyfleet.state.migrate import current_revision, upgrade_to_head
from comfyfleet.util.clock import Clock, SystemClock

DEFAULT_FILE = "comfyfleet.db"
# Key of the PostgreSQL advisory lock that serialises writers (any 64-bit constant: "cfleet").
_PG_WRITE_LOCK = 0x63666C656574
_WRITE_OPTION = "comfyfleet_write"


def database_url(url: str | None, *, data_dir: Path) -> URL:
    """The SQLAlchemy URL for `url` (None: the default SQLite file under `data_dir`).

    `postgresql://` and `postgres://` mean the psycopg 3 driver; other backends are refused.
    """
    if url is None or not url.strip():
        return URL.create("sqlite+pysqlite", database=str(data_dir / DEFAULT_FILE))
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):
        raise StateError(
            "the database URL is not a valid URL",
            hint="use postgresql+psycopg://user:password@host:5432/dbname or sqlite:///path",
        ) from None
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StateError(
                "an in-memory SQLite database cannot hold comfyfleet's state",
                hint="give a file path: sqlite:///path/to/comfyfleet.db",
            )
        path = Path(parsed.database).expanduser()
        return parsed.set(drivername="sqlite+pysqlite", database=str(path))
    raise StateError(
        f"unsupported database {backend!r} in the database URL",
        hint="use PostgreSQL (postgresql+psycopg://...) or SQLite (sqlite:///path)",
    )


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    """Switch the file to WAL, waiting up to `busy_timeout` for processes doing the same.

    Switching needs an exclusive lock that SQLite takes without calling the busy handler, so
    processes creating a fresh database at once get "database is locked" at once: retry.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    assert url.database is not None
    try:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"cannot create the folder for {describe(url)}: {exc.strerror}",
            hint="check permissions, or set COMFYFLEET_DB_URL to another location",
        ) from None
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own implicit
        # BEGIN is deferred, which turns read-then-write into "database is locked").
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _enable_wal(cursor, busy_timeout)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_engine(url: URL, connect_timeout: float) -> Engine:
    try:
        return create_engine(
            url,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(1, int(connect_timeout)),
                "application_name": "comfyfleet",
            },
        )
    except (NoSuchModuleError, ImportError):
        raise StateError(
            "the PostgreSQL driver (psycopg 3) is not installed",
            hint="pip install 'psycopg[binary]'",
        ) from None


class Database:
    """An open, migrated state database. Use `intents` and `instances`; `close()` when done."""

    def __init__(self, engine: Engine, *, clock: Clock) -> None:
        self._engine = engine
        self._url = engine.url
        self.clock = clock
        self.intents = IntentStore(self)
        self.instances = InstanceStore(self)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._url.get_backend_name()

    @property
    def description(self) -> str:
        """How messages name this database (never with a password)."""
        return describe(self._url)

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL."""
        return Path(self._url.database or "") if self.backend == "sqlite" else None

    def now(self, now: float | None = None) -> float:
        """`now` when given, else the clock's time: every stored time goes through here."""
        return self.clock.now() if now is None else now

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One short transaction, committed on success, rolled back on any exception.

        For the modules of this package only. `write=True` holds the write lock throughout.
        """
        with translated(self._url), self._engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: write})
            with conn.begin():
                if write and self.backend == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_WRITE_LOCK}
                    )
                yield conn

    def revision(self) -> str | None:
        """The schema revision the database is at."""
        with self.transaction(write=False) as conn:
            return current_revision(conn)

    def migrate(self) -> str:
        """Upgrade the schema to the newest shipped revision (done by `open_database`)."""
        with translated(self._url):
            return upgrade_to_head(
                lambda: self.transaction(write=False),
                lambda: self.transaction(write=True),
                self.description,
            )

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_database(
    url: str | None,
    *,
    data_dir: Path,
    clock: Clock | None = None,
    busy_timeout: float = 30.0,
    connect_timeout: float = 10.0,
) -> Database:
    """Open (creating and migrating as needed) the state database.

    `url`: None for `<data_dir>/comfyfleet.db`, else a PostgreSQL or SQLite URL (the caller
    reads `COMFYFLEET_DB_URL`). `busy_timeout`: seconds a SQLite writer waits for another;
    `connect_timeout`: seconds to reach PostgreSQL. Raises StateError.
    """
    target = database_url(url, data_dir=data_dir)
    with translated(target):
        if target.get_backend_name() == "sqlite":
            engine = _sqlite_engine(target, busy_timeout)
        else:
            engine = _postgres_engine(target, connect_timeout)
    db = Database(engine, clock=clock or SystemClock())
    try:
        db.migrate()
    except BaseException:
        db.close()
        raise
    return db
