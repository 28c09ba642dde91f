"""ComfyUI's log: a ring buffer served at /internal/logs/raw, mirrored to `<root>/comfyui.log`.

Each log line is one entry `{"t": iso time, "m": "text\\n"}` as ComfyUI's LogInterceptor keeps
them; the file gets the same text, so a tail over SSH reads what a real server prints.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

CAPACITY = 300


class LogBook:
    """ComfyUI-style log entries of one server, also appended to its log file."""

    def __init__(self, path: Path) -> None:
        self.entries: deque[dict[str, str]] = deque(maxlen=CAPACITY)
        self._file: TextIO | None = path.open("a", encoding="utf-8")

    def write(self, text: str) -> None:
        """Record raw text (one or more lines) as the server would print it."""
        for line in text.splitlines(keepends=True):
            self.entries.append({"t": datetime.now().isoformat(), "m": line})
        if self._file is not None:
            self._file.write(text)
            self._file.flush()

    def line(self, message: str) -> None:
        """Log one message (ComfyUI prints every level the same way)."""
        self.write(message + "\n")

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.entries)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def banner_lines(*, device: str, vram_mb: int, ram_mb: int, python_version: str) -> str:
    """ComfyUI 0.3.64's start-up lines on a CUDA machine, up to where custom nodes load."""
    lines = [
        "Checkpoint files will always be loaded safely.",
        f"Total VRAM {vram_mb} MB, total RAM {ram_mb} MB",
        "pytorch version: 2.8.0+cu128",
        "Set vram state to: NORMAL_VRAM",
        f"Device: {device}",
        "Using pytorch attention",
        f"Python version: {python_version}",
        "ComfyUI version: 0.3.64",
        "ComfyUI frontend version: 1.27.10",
        "[Prompt Server] web root: "
        "/venv/main/lib/python3.12/site-packages/comfyui_frontend_package/static",
    ]
    return "\n".join(lines) + "\n"


def ready_lines(url: str) -> str:
    """The start-up lines after the custom nodes (database set-up, then the server's URL)."""
    lines = [
        "Context impl SQLiteImpl.",
        "Will assume non-transactional DDL.",
        "No target revision found.",
        "Starting server",
        "",
        f"To see the GUI go to: {url}",
    ]
    return "\n".join(lines) + "\n"
