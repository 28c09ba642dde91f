"""Terminal rendering: live run progress and run summaries."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from comfyfleet.cli.console import stderr_console, stdout_console
from comfyfleet.models import events as ev
from comfyfleet.services.run import Stage

if TYPE_CHECKING:
    from comfyfleet.services.run import RunReport


class RunView:
    """A live progress bar for one run: stage, current node, step k/n, previews counted.

    Disabled (for --json or a non-terminal stderr it degrades to plain stage lines), it
    renders nothing on stdout, which stays reserved for results.
    """

    def __init__(self, *, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or stderr_console()
        self.labels: dict[str, str] = {}
        self.previews = 0
        self.node = ""
        self._progress: Progress | None = None
        self._task: Any = None
        self._live = enabled and self.console.is_terminal

    def __enter__(self) -> RunView:
        if self._live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None, extra="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def _show(self, description: str, *, completed: float = 0, total: float | None = None) -> None:
        extra = f"previews {self.previews}" if self.previews else ""
        if self._progress is not None:
            self._progress.update(
                self._task, description=description, completed=completed, total=total, extra=extra
            )
        elif self.enabled:
            self.console.print(description, markup=False)

    def update_text(self, text: str) -> None:
        """Show a free-text status line."""
        if self.enabled:
            self._show(text)

    def update(self, item: Stage | ev.Event) -> None:
        """Consume one stage change or server event."""
        if not self.enabled:
            return
        if isinstance(item, Stage):
            self.labels.update(item.labels)
            text = f"{item.name} {item.detail}".strip()
            self._show(text)
        elif isinstance(item, ev.Executing) and item.node is not None:
            self.node = self.labels.get(item.node, item.node)
            self._show(f"running {self.node}")
        elif isinstance(item, ev.Progress):
            label = self.labels.get(item.node or "", item.node or self.node)
            self._show(f"running {label}", completed=item.value, total=item.max)
        elif isinstance(item, ev.PreviewImage):
            self.previews += 1
        elif isinstance(item, ev.ExecutionCached) and item.nodes:
            self._show(f"cached {len(item.nodes)} node(s)")
        elif isinstance(item, ev.Reconnected):
            self._show(f"event stream reconnected (attempt {item.attempt})")


def print_run_report(report: RunReport) -> None:
    """A human summary on stdout: where the files are, and what they are."""
    out = stdout_console()
    out.print(f"job {report.job_id} done in {report.seconds:.1f}s (prompt {report.prompt_id})")
    for warning in report.warnings:
        stderr_console().print(f"warning: {warning}", markup=False)
    table = Table(show_header=True, header_style="bold")
    table.add_column("node")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("sha256")
    for f in report.files:
        table.add_row(f.node_id, f.path, f"{f.size:,}", f.sha256[:16])
    if report.files:
        out.print(table)
    out.print(f"outputs: {report.job_dir}", markup=False)
    out.print(f"manifest: {report.manifest_path}", markup=False)
