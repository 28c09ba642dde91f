"""Terminal rendering for `doctor` and `queue`: checks, fixes, the queue, the repair ladder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from comfyfleet.cli.console import stdout_console

if TYPE_CHECKING:
    from comfyfleet.control.doctor_model import Check
    from comfyfleet.models.comfy import QueueState
    from comfyfleet.services.doctor import DoctorReport
    from comfyfleet.services.queue_repair import RepairReport

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def _checks_table(checks: Sequence[Check], fixes: bool) -> Table:
    table = Table(header_style="bold", show_lines=True)
    for col in ("status", "check", "what was seen"):
        table.add_column(col)
    if fixes:
        table.add_column("fix")
    for c in checks:
        seen = Text(c.summary)
        for line in c.evidence:
            seen.append("\n  " + line, style="dim")
        row: list[Text | str] = [Text(c.status.value, style=_STYLE[c.status.value]), c.title, seen]
        if fixes:
            if c.fix is None or c.status.value in ("ok", "skipped"):
                row.append("")
            else:
                mark = "[--fix applies it] " if c.fix.auto else ""
                row.append(Text(mark, style="bold") + Text(c.fix.text))
        table.add_row(*row)
    return table


def print_doctor(report: DoctorReport) -> None:
    console = stdout_console()
    console.print(f"doctor: {report.target}")
    if report.before is not None:
        console.print("before the fixes:", style="bold")
        console.print(_checks_table(report.before, fixes=True))
        console.print("fixes:", style="bold")
        for f in report.fixes:
            style = "green" if f.applied else "red"
            console.print(Text(f"  {f.action} ({f.check}): ", style=style) + Text(f.outcome))
        if report.repair is not None:
            print_repair(report.repair)
        console.print("after the fixes:", style="bold")
    console.print(_checks_table(report.checks, fixes=True))
    status = report.status.value
    console.print(Text(f"overall: {status}", style=_STYLE[status]))
    auto = [c for c in report.checks if c.fix and c.fix.auto and c.status.value in ("fail", "warn")]
    if auto and report.before is None:
        console.print("run again with --fix to apply the fixes marked [--fix applies it]")


def print_queue(state: QueueState) -> None:
    table = Table(header_style="bold")
    for col in ("state", "#", "prompt id", "client id", "nodes", "outputs"):
        table.add_column(col)
    for kind, items in (("running", state.running), ("pending", state.pending)):
        for item in items:
            table.add_row(
                kind,
                f"{item.number:g}",
                item.prompt_id,
                item.client_id or "-",
                str(len(item.prompt)),
                ", ".join(item.outputs) or "-",
            )
    console = stdout_console()
    if not len(state):
        console.print("the queue is empty")
        return
    console.print(table)


def print_repair(report: RepairReport) -> None:
    console = stdout_console()
    console.print(f"queue repair of {report.target}")
    console.print(f"  snapshot: {report.snapshot_file}")
    if not report.needed:
        console.print(f"  nothing to repair: {report.observed}", style="green")
        return
    console.print(f"  found: {report.observed}")
    for step in report.steps:
        said = step.error or (step.outcome.describe() if step.outcome else "")
        style = "green" if step.worked else "yellow"
        detail = f" [{step.detail}]" if step.detail else ""
        console.print(Text(f"  {step.rung.value}: ", style=style) + Text(f"{said}{detail}"))
    for prompt_id, fate in report.hung.items():
        console.print(f"  hung prompt {prompt_id}: {fate}")
    if report.resubmitted:
        console.print(f"  re-submitted: {', '.join(report.resubmitted)}")
    if report.kept:
        console.print(f"  still queued or done (not re-submitted): {', '.join(report.kept)}")
    for prompt_id, error in report.not_resubmitted.items():
        console.print(Text(f"  NOT re-submitted {prompt_id}: {error}", style="red"))
    if report.repaired:
        console.print("  the queue runs again", style="green")
    else:
        console.print(
            "  the queue still hangs; every prompt is kept in the snapshot file above",
            style="bold red",
        )
