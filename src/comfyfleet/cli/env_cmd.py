"""`comfyfleet env lock|apply`: record an instance's environment, reproduce it on another."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import emit_json, progress_line
from comfyfleet.cli.instances_cmd import JSON_OUT, REF, with_cloud

if TYPE_CHECKING:
    from comfyfleet.services.cloud import Cloud
    from comfyfleet.services.envlock_apply import ApplyReport

app = typer.Typer(
    help="Environment locks: ComfyUI, node packs, protected packages, pip, models.",
    no_args_is_help=True,
)


@app.command("lock")
def lock(
    ctx: typer.Context,
    ref: str = REF,
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the lock here (default: standard output)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Record an instance's environment in a lock file.

    ComfyUI's commit, every node pack with its commit,
    the protected packages' versions, pip freeze, every model file with sha256 and source.

    The file is JSON, format version 1 (see the README, "Environment locks"). Model files
    comfyfleet did not pull have no recorded sha256: they are hashed on the instance.
    """
    from comfyfleet.services.envlock import lock_env, save_lock

    found = with_cloud(ctx, lambda cloud: lock_env(cloud, ref, on_line=progress_line), as_json)
    if output is None:
        sys.stdout.write(found.dumps())
        return
    from comfyfleet.cli.common import fail
    from comfyfleet.errors import ComfyfleetError

    try:
        save_lock(found, output)
    except ComfyfleetError as exc:
        fail(exc, as_json=as_json)
    summary = {
        "lock": str(output),
        "custom_nodes": len(found.custom_nodes),
        "pip": len(found.pip),
        "models": len(found.models),
        "notes": list(found.notes),
    }
    if as_json:
        emit_json(summary)
        return
    typer.echo(
        f"wrote {output}: {summary['custom_nodes']} node pack(s), {summary['pip']} pip "
        f"package(s), {summary['models']} model file(s)"
    )
    for note in found.notes:
        typer.echo(f"note: {note}")


@app.command("apply")
def apply(
    ctx: typer.Context,
    ref: str = REF,
    lock_file: Path = typer.Argument(..., help="A lock written by `comfyfleet env lock`."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change; change nothing."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Reproduce a lock file on an instance and report what still differs.

    Node packs at their commits (torch-guarded), the
    pip packages that differ (never torch & co), the model files (sha256-verified); one
    ComfyUI restart; then every difference left is shown (item, locked, found).

    Exit codes: 0 nothing differs (with --dry-run: nothing would change); 1 differences
    remain or an action failed; 2 an unusable lock file.
    """
    from comfyfleet.cli.render_models import PullView
    from comfyfleet.services.envlock import load_lock
    from comfyfleet.services.envlock_apply import apply_env

    view = PullView()

    async def body(cloud: Cloud) -> Any:
        locked = load_lock(lock_file)
        try:
            return await apply_env(
                cloud, ref, locked, dry_run=dry_run, on_line=progress_line, on_progress=view
            )
        finally:
            view.close()

    report: ApplyReport = with_cloud(ctx, body, as_json)
    if as_json:
        emit_json(report.to_json())
    else:
        _print_apply(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _print_apply(report: ApplyReport) -> None:
    from comfyfleet.cli.console import stdout_console
    from comfyfleet.cli.render_prepare import difference_table

    out = stdout_console()
    source = f" (locked from {report.locked_from})" if report.locked_from else ""
    verb = "would apply" if report.dry_run else "applied"
    out.print(f"{verb} the lock to {report.instance}{source}", markup=False)
    for a in report.actions:
        mark = {"planned": "would", "done": "done", "failed": "FAILED"}[a.status]
        out.print(f"  {mark:6} {a.action} {a.item}: {a.detail}", markup=False)
        if a.error:
            for line in a.error.splitlines():
                out.print(f"         | {line}", markup=False)
        if a.hint and a.status == "failed":
            out.print(f"         fix: {a.hint}", markup=False)
    if report.restart_seconds is not None:
        out.print(f"  restarted ComfyUI once ({report.restart_seconds:.1f} s)", markup=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False)
    if not report.remaining:
        out.print("no difference left: the instance matches the lock", markup=False)
        return
    rows = [d.row for d in report.remaining]
    title = "differences" + ("" if report.dry_run else " left")
    out.print(difference_table(rows, title))
    for d in report.remaining:
        if d.note:
            out.print(f"  {d.item}: {d.note}", markup=False)
