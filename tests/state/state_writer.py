"""A separate process that writes to the state database, for the concurrency tests.

    python state_writer.py <url or ""> <data_dir> <sync_dir> <writer> <count>

Waits until `<sync_dir>/go` exists (so every writer starts at once), then opens the database
(racing the other writers to create and migrate it), records an intent, sights the shared
instance (Vast id 5000) and writes `count` events on it, each in its own transaction.
Prints one JSON line with what it did; exits non-zero on any error.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    url, data_dir, sync_dir, writer, count = sys.argv[1:6]
    from comfyfleet.models.vast import Instance
    from comfyfleet.state.db import open_database
    from comfyfleet.state.rows import EventKind

    sync = Path(sync_dir)
    (sync / f"ready-{writer}").touch()
    deadline = time.monotonic() + 60
    while not (sync / "go").exists():
        if time.monotonic() > deadline:
            print("no go signal", file=sys.stderr)
            return 3
        time.sleep(0.005)
    db = open_database(url or None, data_dir=Path(data_dir), busy_timeout=30.0)
    try:
        intent = db.intents.record(pool="manual", offer=None, request={"writer": writer})
        row, _ = db.instances.upsert_from_vast(
            Instance(id=5000, label="comfyfleet:manual:shared", actual_status="running")
        )
        for n in range(int(count)):
            db.instances.record_event(row.id, EventKind.STATUS, detail={"writer": writer, "n": n})
    finally:
        db.close()
    print(json.dumps({"writer": writer, "instance": row.id, "intent": intent.id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
