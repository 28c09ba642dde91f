"""Failures reach the user as StateError with an actionable message and never a password."""

from __future__ import annotations

import socket
import sqlite3
import traceback
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from comfyfleet.errors import StateError
from comfyfleet.models.vast import Offer
from comfyfleet.state.db import open_database

PASSWORD = "s3cr3t-Pa55word"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _assert_no_password(err: StateError, password: str) -> None:
    shown = "".join(traceback.format_exception(err)) + str(err) + repr(err)
    assert password not in shown


def test_unreachable_postgres_names_host_and_port_but_not_the_password(
    tmp_path: Path,
) -> None:
    port = _free_port()  # nothing listens there
    url = f"postgresql://fleet:{PASSWORD}@127.0.0.1:{port}/fleet"
    with pytest.raises(StateError) as caught:
        open_database(url, data_dir=tmp_path, connect_timeout=2)
    err = caught.value
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in err.message
    assert "database fleet, user fleet" in err.message
    assert "COMFYFLEET_DB_URL" in (err.hint or "")
    _assert_no_password(err, PASSWORD)


def test_wrong_postgres_password_is_a_refused_login(pg_database: URL, tmp_path: Path) -> None:
    url = pg_database.set(password=PASSWORD).render_as_string(hide_password=False)
    with pytest.raises(StateError) as caught:
        open_database(url, data_dir=tmp_path)
    err = caught.value
    assert "refused the login" in err.message
    assert f"{pg_database.host}:{pg_database.port}" in err.message
    _assert_no_password(err, PASSWORD)


def test_missing_postgres_database(pg_database: URL, tmp_path: Path) -> None:
    url = pg_database.set(database="comfyfleet_no_such_db")
    with pytest.raises(StateError) as caught:
        open_database(url.render_as_string(hide_password=False), data_dir=tmp_path)
    assert "does not exist" in caught.value.message
    assert "createdb" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:pw@localhost/db", "unsupported database 'mysql'"),
        ("not a url", "not a valid URL"),
        ("postgresql://u:pw@db:port/x", "not a valid URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_unusable_urls(url: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(StateError, match=expected) as caught:
        open_database(url, data_dir=tmp_path)
    assert "pw" not in caught.value.message


def test_sqlite_folder_that_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(StateError, match="cannot create the folder"):
        open_database(None, data_dir=blocker / "data")


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "comfyfleet.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="damaged") as caught:
        open_database(None, data_dir=tmp_path)
    assert "move the file away" in (caught.value.hint or "")


def test_sqlite_held_by_another_writer_reports_locked(tmp_path: Path, offer: Offer) -> None:
    db = open_database(None, data_dir=tmp_path, busy_timeout=0.2)
    holder = sqlite3.connect(tmp_path / "comfyfleet.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        with pytest.raises(StateError) as caught:
            db.intents.record(pool="manual", offer=offer, request={})
        assert "is locked" in caught.value.message
        assert "retry" in (caught.value.hint or "")
        assert str(tmp_path / "comfyfleet.db") in caught.value.message
        # Readers are not blocked by the writer (WAL).
        assert db.instances.live() == []
        holder.execute("ROLLBACK")
        db.intents.record(pool="manual", offer=offer, request={})
        assert len(db.instances.live()) == 1
    finally:
        holder.close()
        db.close()
