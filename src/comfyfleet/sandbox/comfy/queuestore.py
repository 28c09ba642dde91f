"""The persisted queue of a ComfyUI build that keeps its queue in `user/queue.db` (SQLite).

ComfyUI 0.3.64 keeps its queue in memory only; a field report shows a build with
`user/queue.db`, `queue.db-wal` and `queue.db-shm` whose database corrupted and hung the
queue. In the sandbox's "persisted queue" mode the server writes every pending and running
item here on each queue change (WAL journal, so the -wal/-shm files exist while it runs) and
queues them again at start (a running item was never finished, so it runs again).

When the database cannot be read (not a SQLite file, garbage written over it), the store is
`broken`: nothing is restored or written any more, and the server's worker hangs (see
`ComfyCore.worker`) until the files are removed and the server restarted. `user/comfyui.db`
is a different file and is never opened here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

QueueItem = list[Any]
#: What the corruption knob writes over the database and its journal.
GARBAGE = b"\x00\x13garbage: this is not an SQLite database, its pages were overwritten\n" * 64


class QueueStore:
    """Pending and running queue items in one SQLite file; `broken` says why it is unusable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.broken: str | None = None
        self._db: sqlite3.Connection | None = None

    def open(self) -> list[QueueItem]:
        """Open (or create) the database and return the items it holds, in queue order."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            self._fail(exc)
            return []
        self._db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS queue (position INTEGER PRIMARY KEY, item TEXT)")
            rows = db.execute("SELECT item FROM queue ORDER BY position").fetchall()
            items: list[QueueItem] = [json.loads(row[0]) for row in rows]
            if not all(isinstance(item, list) and len(item) == 5 for item in items):
                raise ValueError("a stored queue item is not [number, id, prompt, extra, outputs]")
        except (sqlite3.Error, ValueError, TypeError) as exc:
            self._fail(exc)
            return []
        return items

    def save(self, items: list[QueueItem]) -> None:
        """Replace the stored items (one transaction); a failure breaks the store."""
        if self._db is None or self.broken is not None:
            return
        try:
            rows = [(i, json.dumps(item)) for i, item in enumerate(items)]
            with contextlib.closing(self._db.cursor()) as cur:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute("DELETE FROM queue")
                cur.executemany("INSERT INTO queue (position, item) VALUES (?, ?)", rows)
                cur.execute("COMMIT")
        except (sqlite3.Error, TypeError, ValueError) as exc:
            self._fail(exc)

    def corrupt(self) -> None:
        """Write garbage over the database and its journal, as the field report's crash did."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal"):
            Path(f"{self.path}{suffix}").write_bytes(GARBAGE)
        self.broken = "sqlite3.DatabaseError: file is not a database"

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _fail(self, exc: BaseException) -> None:
        self.broken = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        self.close()
