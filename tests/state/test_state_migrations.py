"""Migrations: applied on open to an empty database, idempotent, and equal to schema.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

from comfyfleet.errors import StateError
from comfyfleet.models.vast import Offer
from comfyfleet.state.db import Database, open_database
from comfyfleet.state.migrate import alembic_config, head_revision
from comfyfleet.state.schema import metadata
from comfyfleet.util.clock import ManualClock

TABLES = {"create_intents", "instances", "instance_events", "alembic_version"}


def test_open_migrates_an_empty_database_to_head(db: Database, raw_url: URL) -> None:
    assert db.revision() == head_revision()
    engine = create_engine(raw_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
            columns = {c["name"] for c in inspect(conn).get_columns("instances")}
    finally:
        engine.dispose()
    # Columns the pool, reconcile and cost work rely on exist from the start.
    assert {"pool", "lock_token", "lock_expires_at", "last_processed_at", "storage_dph"} <= columns


def test_schema_module_matches_the_migrations(db: Database, raw_url: URL) -> None:
    engine = create_engine(raw_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_reopening_is_idempotent_and_keeps_data(
    db: Database, db_url: str | None, data_dir: Path, clock: ManualClock, offer: Offer
) -> None:
    intent = db.intents.record(pool="manual", offer=offer, request={"image": "x"}, name="keep")
    assert db.migrate() == head_revision()
    for _ in range(2):
        again = open_database(db_url, data_dir=data_dir, clock=clock)
        try:
            assert again.revision() == head_revision()
            assert again.intents.get(intent.id) == intent
            assert again.instances.find("keep").intent_id == intent.id
        finally:
            again.close()


def test_downgrade_then_upgrade_round_trips(db: Database, raw_url: URL) -> None:
    engine = create_engine(raw_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        with engine.connect() as conn:
            assert not {"instances", "instance_events"} & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert db.migrate() == head_revision()
    assert db.revision() == head_revision()


def test_a_database_from_a_newer_version_is_refused(
    db: Database, db_url: str | None, data_dir: Path, raw_url: URL
) -> None:
    engine = create_engine(raw_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(StateError) as caught:
        open_database(db_url, data_dir=data_dir)
    assert "9999" in caught.value.message
    assert "newer comfyfleet" in caught.value.message


def test_sqlite_file_uses_wal_and_foreign_keys(data_dir: Path) -> None:
    db = open_database(None, data_dir=data_dir)
    try:
        path = db.path
        assert path == data_dir / "comfyfleet.db"
        with db.transaction(write=False) as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        db.close()
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_sqlite_url_with_home_relative_path(tmp_path: Path, isolated_home: Path) -> None:
    db = open_database("sqlite:///~/state/fleet.db", data_dir=tmp_path)
    try:
        assert db.path == isolated_home / "state" / "fleet.db"
        assert db.path.exists()
        assert db.revision() == head_revision()
    finally:
        db.close()


def test_importing_the_package_does_not_load_sqlalchemy() -> None:
    # The CLI imports row types for --help paths; the database libraries load on open only.
    code = (
        "import sys, comfyfleet.state as s; "
        "assert s.InstanceRow and not {'sqlalchemy', 'alembic'} & set(sys.modules); "
        "s.open_database; assert 'sqlalchemy' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_fast_path_knows_the_shipped_head() -> None:
    from comfyfleet.state.migrate import SHIPPED_HEAD

    assert head_revision() == SHIPPED_HEAD
