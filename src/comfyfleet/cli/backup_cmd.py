"""`comfyfleet backup|restore` and `comfyfleet workflows ls`: workflow backups to git."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import confirm, emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.config import Settings
    from comfyfleet.services.backup import BackupResult, Holdings, SourceOutcome
    from comfyfleet.services.backup_folders import Source
    from comfyfleet.services.backup_guard import GuardOutcome
    from comfyfleet.services.backup_restore import RestoreResult
    from comfyfleet.services.cloud import Cloud

workflows_app = typer.Typer(help="What the saved workflows of an instance are, and their backups.")

JSON_OUT = typer.Option(False, "--json", help="Print JSON for scripts.")
TARGET = typer.Argument(None, help="Instance (Vast id or name) or a ComfyUI URL.")
REPO = typer.Option(
    None, "--repo", help="The backup git repository (default: \\[backup] repo in the config)."
)
TOKEN = typer.Option(None, "--token", envvar="COMFYFLEET_COMFY__TOKEN", hidden=True)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
    app.add_typer(workflows_app, name="workflows")


def _repo(settings: Settings, repo: Path | None) -> Path:
    from comfyfleet.services.backup import default_repo

    return repo.expanduser() if repo is not None else default_repo(settings)


async def _source(ctx: typer.Context, ref: str, settings: Settings, token: str | None) -> Source:
    from comfyfleet.cli.cloud import cloud_opener
    from comfyfleet.services.backup import resolve_source

    return await resolve_source(ref, settings, token=token, open_cloud=cloud_opener(ctx))


def backup(
    ctx: typer.Context,
    ref: str | None = TARGET,
    all_: bool = typer.Option(False, "--all", help="Back up every running instance."),
    repo: Path | None = REPO,
    as_json: bool = JSON_OUT,
    token: str | None = TOKEN,
) -> None:
    """Back up saved workflows and settings to git (secrets scrubbed); commits only changes."""
    from comfyfleet.cli.common import fail
    from comfyfleet.errors import UsageError

    settings = global_options(ctx).settings()
    path = _repo(settings, repo)
    if all_ == (ref is not None):
        fail(
            UsageError(
                "give an instance (or URL) to back up, or --all",
                hint="comfyfleet backup studio   or   comfyfleet backup --all",
            ),
            as_json=as_json,
        )
    if all_:
        _backup_all(ctx, path, as_json)
        return
    assert ref is not None
    from comfyfleet.services.backup import backup_source

    async def _main() -> BackupResult:
        source = await _source(ctx, ref, settings, token)
        return await backup_source(source, path, settings)

    result = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(result.to_json())
    else:
        print_backup(result)


def _backup_all(ctx: typer.Context, path: Path, as_json: bool) -> None:
    from comfyfleet.cli.instances_cmd import with_cloud
    from comfyfleet.services.backup import backup_all

    def body(cloud: Cloud) -> Any:
        return backup_all(cloud, path)

    outcomes: list[SourceOutcome] = with_cloud(ctx, body, as_json)
    failed = [o for o in outcomes if o.error is not None]
    if as_json:
        from comfyfleet.cli.common import error_payload

        emit_json(
            [
                {
                    "source": o.source,
                    "result": o.result.to_json() if o.result else None,
                    "error": error_payload(o.error) if o.error else None,
                }
                for o in outcomes
            ]
        )
    else:
        if not outcomes:
            typer.echo("no running instance to back up")
        for outcome in outcomes:
            if outcome.result is not None:
                print_backup(outcome.result)
            elif outcome.error is not None:
                typer.echo(f"{outcome.source}: not backed up: {outcome.error.message}", err=True)
    if failed:
        raise typer.Exit(1)


def print_backup(result: BackupResult) -> None:
    typer.echo(f"{result.source} -> {result.repo} (folder {result.folder})")
    if result.commit is None:
        typer.echo(f"  no changes since the last backup ({result.workflows} workflow file(s))")
    else:
        counts = ", ".join(
            f"{len(getattr(result, k))} {k}"
            for k in ("added", "changed", "deleted")
            if getattr(result, k)
        )
        typer.echo(f"  committed {result.commit[:10]}: {counts or 'index updated'}")
        for path in result.deleted:
            typer.echo(f"  deleted from the backup folder (gone from the server): {path}")
    if result.findings:
        typer.echo(
            f"  scrubbed {len(result.findings)} secret value(s); "
            "the repository holds placeholders, never the values:"
        )
        for finding in result.findings:
            typer.echo(f"    {finding.describe()}")
    for path, why in result.skipped:
        typer.echo(f"  skipped {path!r}: {why}", err=True)
    for warning in result.warnings:
        typer.echo(f"  warning: {warning}", err=True)


def restore(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Instance (Vast id or name) or ComfyUI URL to write to."),
    repo: Path | None = REPO,
    rev: str | None = typer.Option(
        None, "--rev", help="Restore as of this commit (id, branch, tag, HEAD~N); default HEAD."
    ),
    only: list[str] = typer.Option(
        None, "--only", help="Only this workflow (path or file name); repeatable."
    ),
    from_folder: str | None = typer.Option(
        None, "--from", help="The repository folder to restore from (another instance's)."
    ),
    with_settings: bool = typer.Option(
        False, "--settings", help="Also write the backed-up ComfyUI settings."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace workflows the server holds with other content."
    ),
    as_json: bool = JSON_OUT,
    token: str | None = TOKEN,
) -> None:
    """Write backed-up workflows back to an instance, byte for byte as the repository holds them."""
    from comfyfleet.services.backup_restore import restore as do_restore

    settings = global_options(ctx).settings()
    path = _repo(settings, repo)

    async def _main() -> RestoreResult:
        source = await _source(ctx, ref, settings, token)
        return await do_restore(
            source,
            path,
            settings,
            rev=rev,
            only=only or [],
            from_folder=from_folder,
            with_settings=with_settings,
            overwrite=overwrite,
        )

    result = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(result.to_json())
        return
    typer.echo(
        f"restore to {result.target} from folder {result.folder} at {result.commit[:10]} "
        f"({result.repo}):"
    )
    notes = {
        "kept": " (the server holds other content; --overwrite replaces it)",
        "filled": " (the server holds it with the secrets filled in: kept)",
    }
    for item in result.files:
        typer.echo(f"  {item.status:<9} {item.path}{notes.get(item.status, '')}")
    if not result.files:
        typer.echo("  the folder holds no workflows")
    if result.settings is not None:
        typer.echo(f"  {result.settings:<9} settings (comfy.settings.json)")
    marked = result.with_placeholders
    if marked:
        typer.echo(
            f"{len(marked)} workflow(s) carry scrubbed placeholders instead of secrets "
            "(<scrubbed:KIND:HASH>): fill those values in again before running them:"
        )
        for item in marked:
            typer.echo(f"  {item.path}: {', '.join(item.placeholders)}")


@workflows_app.command("ls")
def workflows_ls(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="Instance (Vast id or name) or ComfyUI URL."),
    repo: Path | None = REPO,
    as_json: bool = JSON_OUT,
    token: str | None = TOKEN,
) -> None:
    """List an instance's saved workflows and whether each is in the backup repository."""
    from comfyfleet.services.backup import held_workflows

    settings = global_options(ctx).settings()
    path = _repo(settings, repo)

    async def _main() -> Holdings:
        source = await _source(ctx, ref, settings, token)
        return await held_workflows(source, path, settings)

    held = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(
            {
                "source": held.source,
                "repo": str(held.repo),
                "repo_exists": held.repo_exists,
                "folder": held.folder,
                "workflows": [w.to_json() for w in held.workflows],
                "skipped": [{"path": p, "reason": r} for p, r in held.skipped],
            }
        )
        return
    _print_holdings(held)


def _print_holdings(held: Holdings) -> None:
    from datetime import datetime

    from rich.table import Table
    from rich.text import Text

    from comfyfleet.cli.console import stdout_console

    table = Table(title=f"{held.source}: saved workflows", title_justify="left")
    for column in ("path", "size", "modified", "backup"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for w in held.workflows:
        when = datetime.fromtimestamp(w.modified).strftime("%Y-%m-%d %H:%M") if w.modified else ""
        shown = {"copy": f"yes (as {w.elsewhere})", "backed-up": "yes"}.get(w.status, w.status)
        table.add_row(Text(w.path), str(w.size), when, Text(shown))
    console = stdout_console()
    console.print(table)
    where = f"folder {held.folder} of {held.repo}" if held.folder else str(held.repo)
    if not held.repo_exists:
        console.print(Text(f"no backup repository at {held.repo} yet"))
    elif held.pending:
        console.print(Text(f"{len(held.pending)} workflow(s) not in {where}"))
    for path, why in held.skipped:
        console.print(Text(f"skipped {path!r}: {why}"))


async def backup_first(cloud: Cloud, ref: str, *, verb: str, yes: bool) -> GuardOutcome:
    """The backup `stop`/`destroy` run first; asks whether to go on when it cannot run."""
    from comfyfleet.services.backup_guard import backup_before
    from comfyfleet.services.instances import find

    row = await find(cloud, ref)
    outcome = await backup_before(cloud, row)
    if not outcome.failed:
        commit = outcome.result.commit if outcome.result else None
        suffix = f" (commit {commit[:10]})" if commit else ""
        typer.echo(f"backup: {outcome.message}{suffix}", err=True)
        return outcome
    typer.secho(f"warning: {outcome.message}", fg="yellow", err=True)
    if yes:
        why = "a leaked instance costs more than a lost backup" if verb == "destroy" else "--yes"
        typer.echo(f"going on without a backup ({why})", err=True)
    elif not confirm(f"{verb} {row.display_name} without backing up its workflows?"):
        raise typer.Abort()
    return outcome
