"""Several processes at once: first open (migration race) and interleaved writes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from comfyfleet.state.db import open_database
from comfyfleet.state.migrate import head_revision
from comfyfleet.state.rows import EventKind

WRITER = Path(__file__).with_name("state_writer.py")
WRITERS = 3
EVENTS_EACH = 40


def _run_writers(db_url: str | None, data_dir: Path, sync: Path) -> list[dict[str, object]]:
    sync.mkdir()
    args = [sys.executable, str(WRITER), db_url or "", str(data_dir), str(sync)]
    procs = [
        subprocess.Popen(
            [*args, str(k), str(EVENTS_EACH)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
            time.sleep(0.01)
        (sync / "go").touch()
        outs = [p.communicate(timeout=90) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    return [json.loads(out) for out, _ in outs]


def test_processes_opening_and_writing_at_once_all_succeed(
    db_url: str | None, data_dir: Path, tmp_path: Path
) -> None:
    # Nothing exists yet: every writer races to create and migrate the database.
    results = _run_writers(db_url, data_dir, tmp_path / "sync")

    db = open_database(db_url, data_dir=data_dir)
    try:
        assert db.revision() == head_revision()
        # They all sighted the same Vast instance: one row, not one per process.
        assert len({r["instance"] for r in results}) == 1
        row = db.instances.by_vast_id(5000)
        assert row is not None
        events = db.instances.events(row.id)
        written = [e for e in events if e.detail.get("writer") is not None]
        assert len(written) == WRITERS * EVENTS_EACH
        for k in range(WRITERS):
            mine = [e.detail["n"] for e in written if e.detail["writer"] == str(k)]
            assert mine == list(range(EVENTS_EACH))
        # Exactly one first sighting, whichever process won.
        first = [e for e in events if e.kind is EventKind.STATUS and e.detail.get("first_seen")]
        assert len(first) == 1
        assert len(db.intents.pending()) == WRITERS
    finally:
        db.close()


def test_threads_creating_fresh_files_at_once_all_open_them(tmp_path: Path) -> None:
    # Switching a fresh file to WAL takes an exclusive lock SQLite does not wait for by
    # itself: connections racing to create the same file must wait for each other, not fail.
    rounds, racers = 40, 4
    for n in range(rounds):
        data_dir = tmp_path / str(n)
        barrier = threading.Barrier(racers)
        errors: list[BaseException] = []

        def race(
            data_dir: Path = data_dir,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                open_database(None, data_dir=data_dir, busy_timeout=10.0).close()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        conn = sqlite3.connect(data_dir / "comfyfleet.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
