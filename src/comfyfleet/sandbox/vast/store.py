"""The cloud's state on disk: one JSON file, replaced atomically, readable only by its owner."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from comfyfleet.errors import SandboxError


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise SandboxError(
                f"cannot read the sandbox cloud state {self.path}: {exc}",
                hint="move the file away to start with a fresh simulated cloud",
            ) from exc
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, self.path)
