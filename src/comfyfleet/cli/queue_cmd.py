"""`comfyfleet queue ID [show|interrupt|clear|repair]`: ComfyUI's queue, and its repair."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.services.doctor_access import Access


class Action(StrEnum):
    SHOW = "show"
    INTERRUPT = "interrupt"
    CLEAR = "clear"
    REPAIR = "repair"


def register(app: typer.Typer) -> None:
    app.command("queue")(queue)


def queue(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="Instance (Vast id or name), or a ComfyUI URL."),
    action: Action = typer.Argument(Action.SHOW, help="show | interrupt | clear | repair"),
    window: float = typer.Option(
        30.0, "--window", help="repair: seconds each observation (and the probe) may take."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    token: str | None = typer.Option(
        None, "--token", envvar="COMFYFLEET_COMFY__TOKEN", hidden=True
    ),
) -> None:
    """Show, interrupt, clear or repair an instance's ComfyUI queue.

    Show the queue, interrupt the running prompt, clear the pending ones, or repair a stuck
    queue: snapshot it, then interrupt -> clear -> restart ComfyUI -> remove persisted queue
    files and restart, stopping at the first rung after which it runs; the pending prompts a
    rung dropped are re-submitted with their prompt and client ids. Exits 1 if still stuck."""
    from rich.text import Text

    from comfyfleet.cli.cloud import cloud_opener
    from comfyfleet.cli.console import stderr_console
    from comfyfleet.services import queue_repair as q
    from comfyfleet.services.doctor_access import open_access

    settings = global_options(ctx).settings()
    err = stderr_console()

    async def body(access: Access) -> Any:
        if action is Action.SHOW:
            return await q.show(access)
        if action is Action.INTERRUPT:
            return await q.interrupt(access)
        if action is Action.CLEAR:
            return await q.clear(access)
        return await q.repair(
            access, seconds=window, progress=lambda text: err.print(Text(text, style="dim"))
        )

    async def _main() -> Any:
        needs_ssh = action is Action.REPAIR
        async with open_access(
            target, settings, token=token, open_cloud=cloud_opener(ctx), ssh=needs_ssh
        ) as access:
            if needs_ssh and access.ssh_error:
                err.print(Text(f"SSH: {access.ssh_error} (no restart rungs)", style="yellow"))
            return await body(access)

    result = run_async(_main, as_json=as_json)
    _print(action, result, as_json)


def _print(action: Action, result: Any, as_json: bool) -> None:
    from comfyfleet.cli import render_doctor as render
    from comfyfleet.services.queue_repair import queue_json

    if action is Action.SHOW:
        emit_json(queue_json(result)) if as_json else render.print_queue(result)
    elif action in (Action.INTERRUPT, Action.CLEAR):
        key = "interrupted" if action is Action.INTERRUPT else "cleared"
        if as_json:
            emit_json({key: result})
        elif not result:
            typer.echo("nothing was running" if key == "interrupted" else "nothing was pending")
        else:
            typer.echo(f"{key}: {', '.join(result)}")
    else:
        emit_json(result.to_json()) if as_json else render.print_repair(result)
        if not result.repaired:
            raise typer.Exit(1)
