"""Small answers (registry look-ups, hub metadata) remembered on disk for a while.

One JSON file maps keys to `{value, at}`; entries older than the TTL are ignored. Negative
answers are kept too ("the registry knows no such class"), so a workflow with ten unknown
classes costs ten requests once a day, not at every run. A damaged file is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: What `get` returns for a key it does not know (or no longer trusts).
MISS: Any = object()


class LookupCache:
    """Key -> JSON value with a time-to-live, loaded once and saved on `save()`."""

    def __init__(self, path: Path, *, ttl: float, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._ttl = ttl
        self._now = now
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._entries = {k: v for k, v in data.items() if isinstance(v, dict) and "at" in v}

    def get(self, key: str) -> Any:
        """The remembered value, or `MISS` when there is none (or it is too old)."""
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        at = entry.get("at")
        if not isinstance(at, int | float) or self._now() - at >= self._ttl:
            return MISS
        return entry.get("value")

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = {"value": value, "at": self._now()}
        self._dirty = True

    def save(self) -> None:
        """Write the entries back (best effort: a cache we cannot write costs requests)."""
        if not self._dirty:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._entries, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
            self._dirty = False
