"""Terminal rendering for model files: pull progress (stderr), results and listings (stdout)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from comfyfleet.cli.console import stderr_console, stdout_console
from comfyfleet.services.models_pull import size_text

if TYPE_CHECKING:
    from comfyfleet.services.models import ModelFile, PlannedPull, PullProgress, PullResult

#: Seconds between progress lines when stderr is not a terminal (logs stay readable).
LINE_EVERY = 2.0


class PullView:
    """Pull progress: messages as lines; the download as one line redrawn on a terminal,
    or a line every few seconds elsewhere."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self.live = self.console.is_terminal
        self.last = 0.0
        self.drawn = False

    def planned(self, planned: PlannedPull) -> None:
        for note in (*planned.notes, *planned.warnings):
            self._line(note)

    def _line(self, text: str) -> None:
        self.close()
        self.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        if self.drawn:
            self.console.file.write("\n")
            self.console.file.flush()
            self.drawn = False

    def __call__(self, p: PullProgress) -> None:
        if p.stage != "download" or p.message:
            if p.message:
                self._line(p.message)
            return
        pct = f" ({100 * p.done / p.total:.0f}%)" if p.total else ""
        speed = f" at {size_text(int(p.speed))}/s" if p.speed else ""
        text = f"  {size_text(p.done)} / {size_text(p.total)}{pct}{speed}"
        if self.live:
            self.console.file.write("\r" + text.ljust(60))
            self.console.file.flush()
            self.drawn = True
        elif time.monotonic() - self.last >= LINE_EVERY or (p.total and p.done >= p.total):
            self.last = time.monotonic()
            self.console.print(text, markup=False, highlight=False)


def print_pulled(result: PullResult) -> None:
    out = stdout_console()
    if result.status == "present":
        out.print(f"models/{result.path} is already there (sha256 {result.sha256})", markup=False)
        return
    resumed = f", continued from {size_text(result.resumed_from)}" if result.resumed_from else ""
    checked = "verified" if result.verified else "recorded"
    out.print(
        f"models/{result.path}: {size_text(result.size)} in {result.seconds:.1f} s{resumed}; "
        f"sha256 {result.sha256} ({checked})",
        markup=False,
    )


def print_models(files: Sequence[ModelFile]) -> None:
    if not files:
        stdout_console().print("no model files")
        return
    table = Table(header_style="bold")
    for col in ("folder", "file", "size", "sha256", "source"):
        table.add_column(col, overflow="fold")
    for f in files:
        name = f"{f.path} (partial)" if f.partial else f.path
        table.add_row(f.folder, name, size_text(f.size), (f.sha256 or "-")[:16], f.source or "-")
    stdout_console().print(table)
