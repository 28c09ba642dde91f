"""`comfyfleet login|offers|up|ls|show|stop|start|destroy|rename`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import confirm, emit_json, global_options, run_async

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from comfyfleet.errors import VastError
    from comfyfleet.services.cloud import Cloud

JSON_OUT = typer.Option(False, "--json", help="Print JSON for scripts.")
REF = typer.Argument(..., help="Instance: Vast id or name.")


def register(app: typer.Typer) -> None:
    for name, fn in (
        ("login", login),
        ("offers", offers),
        ("up", up),
        ("ls", ls),
        ("show", show),
        ("stop", stop),
        ("start", start),
        ("destroy", destroy),
        ("rename", rename),
    ):
        app.command(name)(fn)


def with_cloud(ctx: typer.Context, body: Callable[[Cloud], Awaitable[Any]], as_json: bool) -> Any:
    """Run `body` with the profile's cloud open (Vast client + database)."""
    from comfyfleet.cli.cloud import cloud_config
    from comfyfleet.services.cloud import open_cloud

    settings = global_options(ctx).settings()

    async def _main() -> Any:
        async with open_cloud(cloud_config(settings)) as cloud:
            return await body(cloud)

    return run_async(_main, as_json=as_json)


def login(ctx: typer.Context) -> None:
    """Store your Vast API key (OS keyring, else a 0600 file); it is asked for, never passed."""
    from comfyfleet.cli.common import fail
    from comfyfleet.errors import ComfyfleetError
    from comfyfleet.vast.keys import check_api_key, store_api_key

    settings = global_options(ctx).settings()
    key = typer.prompt("Vast API key (console.vast.ai/account)", hide_input=True)
    try:
        where = store_api_key(check_api_key(key), config_dir=settings.config_dir())
    except ComfyfleetError as exc:
        fail(exc)
    typer.echo(f"stored the key in {where}")


def offers(
    ctx: typer.Context,
    query: list[str] = typer.Argument(None, help="Filters: gpu_name=RTX_4090 dph<0.6 ..."),
    order: str | None = typer.Option(None, "--order", help="e.g. 'dph_total' or 'score-'."),
    limit: int = typer.Option(20, "--limit", help="How many offers to show."),
    disk: float | None = typer.Option(None, "--disk", help="Disk GB (prices include it)."),
    as_json: bool = JSON_OUT,
) -> None:
    """Search offers with the `vastai search offers` query language, ComfyUI defaults applied."""
    from comfyfleet.cli.render_cloud import print_offers
    from comfyfleet.services.up import UpRequest, offer_query

    async def body(cloud: Cloud) -> Any:
        request = UpRequest(query=query or [], disk_gb=disk, order=order)
        wire = offer_query(cloud, request, limit=limit)
        return wire, await cloud.vast.search_offers(wire)

    wire, found = with_cloud(ctx, body, as_json)
    if as_json:
        emit_json([o.model_dump(mode="json", by_alias=False) for o in found])
    else:
        print_offers(found, wire)


def up(
    ctx: typer.Context,
    query: list[str] = typer.Argument(None, help="Offer filters (as for `offers`)."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU name, e.g. 'RTX 4090'."),
    max_dph: float | None = typer.Option(None, "--max-dph", help="Highest $/hour."),
    image: str | None = typer.Option(None, "--image", help="Docker image (Vast's ComfyUI)."),
    disk: float | None = typer.Option(None, "--disk", help="Disk GB, fixed for its life."),
    label: str | None = typer.Option(None, "--label", "--name", help="Your name for it."),
    order: str | None = typer.Option(None, "--order", help="Offer order, e.g. 'dph_total'."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the offers up would try, in order; rent nothing."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Rent the best matching offer and wait until its ComfyUI really answers."""
    from comfyfleet.cli.render_cloud import StatusLines, print_up
    from comfyfleet.services.up import UpRequest, candidates
    from comfyfleet.services.up import up as do_up

    request = UpRequest(
        query=query or [],
        gpu=gpu,
        max_dph=max_dph,
        image=image,
        disk_gb=disk,
        name=label,
        order=order,
    )
    if dry_run:
        from comfyfleet.cli.render_cloud import print_offers

        found = with_cloud(ctx, lambda cloud: candidates(cloud, request), as_json)
        if as_json:
            emit_json({"dry_run": True, "offers": [o.model_dump(mode="json") for o in found]})
            return
        print_offers(found, {})
        typer.echo(f"dry run: up would try these {len(found)} offer(s) in this order", err=True)
        return
    lines = StatusLines()  # on stderr even with --json: up takes minutes
    result = with_cloud(ctx, lambda cloud: do_up(cloud, request, lines), as_json)
    if as_json:
        emit_json(
            {
                "id": result.instance.id,
                "name": result.row.name,
                "url": result.url,
                "offer": result.offer.id,
                "dph_total": result.offer.dph_total,
                "attempts": result.attempts,
                "reconciled": [a.describe() for a in result.reconciled],
            }
        )
    else:
        print_up(result)


def ls(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", "-a", help="Include destroyed instances."),
    as_json: bool = JSON_OUT,
) -> None:
    """List instances (after reconciling with Vast).

    When Vast cannot be reached the instances are listed as last recorded, a warning says so
    and the exit code is the error's (7).
    """
    from comfyfleet.cli.render_cloud import print_actions, print_instances
    from comfyfleet.services.instances import list_last_known

    views, actions, unreached = with_cloud(
        ctx, lambda cloud: list_last_known(cloud, all_=all_), as_json
    )
    if as_json:
        emit_json([v.to_json() for v in views])
    else:
        print_actions(actions)
        print_instances(views)
    _last_recorded(unreached, "instances")


def _last_recorded(unreached: VastError | None, what: str) -> None:
    """After printing: warn that Vast could not be asked, and exit with its error's code."""
    if unreached is None:
        return
    typer.secho(
        f"warning: {unreached.message}: {what} as last recorded "
        "(statuses and costs may be out of date)",
        fg="yellow",
        err=True,
    )
    raise typer.Exit(unreached.exit_code)


def show(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """One instance in detail, with its event history and cost so far (as last recorded,
    with a warning, when Vast cannot be reached)."""
    from comfyfleet.cli.render_cloud import print_show
    from comfyfleet.services.instances import show_last_known, view

    async def body(cloud: Cloud) -> Any:
        row, unreached = await show_last_known(cloud, ref)
        return view(cloud, row), cloud.db.instances.events(row.id), unreached

    shown, events, unreached = with_cloud(ctx, body, as_json)
    if as_json:
        emit_json(
            {
                **shown.to_json(),
                "events": [
                    {
                        "at": e.at,
                        "kind": str(e.kind),
                        "from": e.from_status,
                        "to": e.to_status,
                        "detail": dict(e.detail),
                    }
                    for e in events
                ],
            }
        )
    else:
        print_show(shown, events)
    _last_recorded(unreached, "the instance")


def _simple(
    ctx: typer.Context,
    ref: str,
    as_json: bool,
    verb: str,
    *,
    backup: bool = False,
    yes: bool = False,
) -> None:
    from comfyfleet.services import instances

    action = getattr(instances, verb)

    async def body(cloud: Cloud) -> Any:
        guard = None
        if backup:  # back the workflows up first (see cli.backup_cmd.backup_first)
            from comfyfleet.cli.backup_cmd import backup_first

            guard = await backup_first(cloud, ref, verb=verb, yes=yes)
        return await action(cloud, ref), guard

    row, guard = with_cloud(ctx, body, as_json)
    if as_json:
        out = {"id": row.vast_id, "name": row.name, "status": row.status.value}
        if guard is not None:
            out["backup"] = guard.to_json()
        emit_json(out)
    else:
        typer.echo(f"instance {row.display_name}: {row.status.value}")


NO_BACKUP = typer.Option(
    False, "--no-backup", help="Do not back up the instance's saved workflows first."
)


def stop(
    ctx: typer.Context,
    ref: str = REF,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask if the backup cannot run."),
    no_backup: bool = NO_BACKUP,
    as_json: bool = JSON_OUT,
) -> None:
    """Stop an instance (the GPU is released; storage still bills until destroyed).

    Saved workflows the backup repository lacks are backed up first (see --no-backup).
    """
    _simple(ctx, ref, as_json, "stop", backup=not no_backup, yes=yes)


def start(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """Start a stopped instance (it may wait if its GPU was rented meanwhile)."""
    _simple(ctx, ref, as_json, "start")


def destroy(
    ctx: typer.Context,
    ref: str = REF,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    no_backup: bool = NO_BACKUP,
    as_json: bool = JSON_OUT,
) -> None:
    """Destroy an instance: billing stops, its disk is gone. Asks first unless --yes.

    Saved workflows the backup repository lacks are backed up first (see --no-backup).
    """
    if not yes and not confirm(f"destroy instance {ref}? Its disk will be lost", as_json=as_json):
        raise typer.Exit(1)
    _simple(ctx, ref, as_json, "destroy", backup=not no_backup, yes=yes)


def rename(
    ctx: typer.Context,
    ref: str = REF,
    name: str = typer.Argument(..., help="The new name."),
    as_json: bool = JSON_OUT,
) -> None:
    """Rename an instance (its tracking tag stays, so it is never lost)."""
    from comfyfleet.services.instances import rename as do_rename

    row = with_cloud(ctx, lambda cloud: do_rename(cloud, ref, name), as_json)
    if as_json:
        emit_json({"id": row.vast_id, "name": row.name})
    else:
        typer.echo(f"instance {row.vast_id} is now named {row.name}")
