"""Every state test runs twice: on a SQLite file and on a real PostgreSQL server.

PostgreSQL comes from `COMFYFLEET_TEST_PG_URL` (see scripts/test-postgres.sh), a URL whose
role may create databases. The session makes one fresh database and drops it at the end;
each test gets its own schema in it (through `options=-csearch_path=...` in the URL, exactly
as a user could write it). Without a reachable server the PostgreSQL half fails under CI=true
and is skipped elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from comfyfleet.models.vast import Offer
from comfyfleet.state.db import Database, open_database
from comfyfleet.util.clock import ManualClock

# Read at import: the autouse home fixture removes COMFYFLEET_* variables during each test.
PG_SERVER_URL = os.environ.get("COMFYFLEET_TEST_PG_URL", "").strip()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(reason)


def _admin_exec(url: URL, sql: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[URL]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    if not PG_SERVER_URL:
        _unavailable("COMFYFLEET_TEST_PG_URL is not set (see scripts/test-postgres.sh)")
    server = make_url(PG_SERVER_URL).set(drivername="postgresql+psycopg")
    name = f"comfyfleet_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        _admin_exec(server, f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        _unavailable(f"cannot create a test database on {server.host}:{server.port}: {exc}")
    try:
        yield server.set(database=name)
    finally:
        _admin_exec(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: URL) -> Iterator[str]:
    """A URL whose tables land in a new, empty schema of the session database."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _admin_exec(pg_database, f'CREATE SCHEMA "{schema}"')
    url = pg_database.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        _admin_exec(pg_database, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None (the default SQLite file under data_dir) or a PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_800_000_000.0)


@pytest.fixture
def db(db_url: str | None, data_dir: Path, clock: ManualClock) -> Iterator[Database]:
    database = open_database(db_url, data_dir=data_dir, clock=clock)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def raw_url(db_url: str | None, data_dir: Path) -> URL:
    """The URL to inspect the same database behind the package's back."""
    if db_url is None:
        return URL.create("sqlite+pysqlite", database=str(data_dir / "comfyfleet.db"))
    return make_url(db_url)


@pytest.fixture
def offer() -> Offer:
    return Offer.model_validate(
        {
            "id": 29_000_001,
            "machine_id": 4242,
            "host_id": 77,
            "gpu_name": "RTX 4090",
            "num_gpus": 1,
            "gpu_ram": 24564,
            "dph_total": 0.412,
            "storage_cost": 0.15,
            "reliability2": 0.995,
            "cuda_max_good": 12.8,
            "geolocation": "Sweden, SE",
        }
    )
