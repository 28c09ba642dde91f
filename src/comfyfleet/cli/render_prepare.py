"""Terminal rendering of `prepare` (what was done, what was not) and of `env apply`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from comfyfleet.cli.console import stdout_console
from comfyfleet.services.models_pull import size_text

if TYPE_CHECKING:
    from comfyfleet.control.prepare_plan import Unresolved
    from comfyfleet.services.prepare import PrepareReport


def _print(text: str) -> None:
    stdout_console().print(text, markup=False, highlight=False, soft_wrap=True)


def print_unresolved(items: Sequence[Unresolved]) -> None:
    if not items:
        return
    _print("could not resolve:")
    for u in items:
        first, *rest = (u.detail or u.reason).splitlines() or [u.reason]
        _print(f"  {u.kind:8} {u.item}: {u.reason}: {first}")
        for line in (*rest, *u.log_lines[1:]):
            _print(f"           | {line}")
        if u.fix:
            _print(f"           fix: {u.fix}")


def print_prepare(report: PrepareReport) -> None:
    _print(f"prepare {report.workflow} on {report.instance}")
    for p in report.packs:
        verb = {"installed": "installed", "updated": "updated"}.get(p.status, "found installed")
        classes = f"{len(p.classes)} node class{'es' if len(p.classes) != 1 else ''}"
        shown = ", ".join(p.classes[:8]) + (" …" if len(p.classes) > 8 else "")
        _print(f"  {verb} {p.pack} at {p.commit[:12]} ({classes}{': ' + shown if shown else ''})")
        if p.requirements:
            _print("    requirements: " + " ".join(p.requirements))
        for note in p.notes:
            _print(f"    note: {note}")
    for m in report.models:
        if m.status == "downloaded":
            _print(
                f"  downloaded {m.path} ({size_text(m.size)}, sha256 {m.sha256}) from {m.source}"
            )
        elif m.status == "kept":
            _print(f"  already on the instance: {m.path} (sha256 {m.sha256})")
        else:
            _print(f"  present {m.path}")
    if report.restarted:
        _print(f"  restarted ComfyUI once ({report.restart_seconds or 0:.1f} s)")
    elif not report.changed:
        _print("  nothing to do: every node class and model file was already there")
    for warning in report.warnings:
        _print(f"  warning: {warning}")
    print_unresolved(report.unresolved)
    if report.runnable:
        outputs = ", ".join(report.outputs)
        _print(f"ready: ComfyUI on {report.instance} accepts the workflow (outputs: {outputs})")
    else:
        _print(f"NOT READY: ComfyUI on {report.instance} would refuse the workflow")
    w = report.warm_up
    if w is not None:
        if w.skipped:
            _print("warm-up skipped: the workflow is not runnable yet")
        elif w.error:
            _print(f"warm-up FAILED: {w.error}")
        else:
            kept = f", outputs in {w.kept_in}" if w.kept_in else ""
            _print(f"warm-up: {w.seconds or 0:.1f} s, {w.files} output file(s){kept}")


def difference_table(rows: Sequence[tuple[str, str, str]], title: str) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for col in ("item", "locked", "found"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
