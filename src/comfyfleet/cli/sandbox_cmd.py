"""`comfyfleet sandbox ...`: the built-in simulated world."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="The built-in sandbox: a simulated Vast cloud and ComfyUI (no account, no money)."
)


_ROOT_OPTION = typer.Option(
    None, "--root", help="ComfyUI folder (models/, input/, output/, user/); default: a temp dir."
)


@app.command("comfy")
def comfy(
    port: int = typer.Option(8188, "--port", help="Port on 127.0.0.1 (0 picks a free one)."),
    root: Path | None = _ROOT_OPTION,
    speed: float = typer.Option(1.0, "--speed", help="Simulated seconds per real second."),
) -> None:
    """Serve one standalone sandbox ComfyUI on 127.0.0.1 until Ctrl+C."""
    import asyncio
    import tempfile

    from comfyfleet.cli.common import EXIT_INTERRUPTED
    from comfyfleet.sandbox.comfy.server import serve

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    base = root or Path(tempfile.mkdtemp(prefix="comfyfleet-sandbox-"))
    typer.echo(f"sandbox ComfyUI root: {base}", err=True)
    try:
        asyncio.run(serve(base, "127.0.0.1", port, speed))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _state_dir(ctx: typer.Context, state_dir: Path | None) -> Path:
    from comfyfleet.cli.common import global_options
    from comfyfleet.sandbox.vast.process import default_state_dir

    return state_dir or default_state_dir(global_options(ctx).settings())


_STATE_DIR_OPTION = typer.Option(
    None, "--state-dir", help="Where the sandbox keeps its state (default: <data dir>/sandbox)."
)


@app.command("start")
def start(
    ctx: typer.Context,
    speed: float = typer.Option(
        1.0, "--speed", help="Simulated seconds per real second (durations and billing)."
    ),
    detach: bool = typer.Option(False, "--detach", help="Run in the background and return."),
    port: int = typer.Option(0, "--port", help="API port on 127.0.0.1 (0 picks a free one)."),
    state_dir: Path | None = _STATE_DIR_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the generated market (first start)."),
    credit: float = typer.Option(50.0, "--credit", help="Starting credit in $ (first start)."),
    no_hosts: bool = typer.Option(
        False, "--no-hosts", help="Start no host processes (instances get made-up ports)."
    ),
    exit_with: int | None = typer.Option(
        None,
        "--exit-with",
        metavar="PID",
        help="Stop once process PID ends (a script or test run that may be killed).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run the simulated Vast cloud on 127.0.0.1 (foreground until Ctrl+C, or --detach)."""
    import asyncio

    from comfyfleet.cli.common import EXIT_INTERRUPTED, emit_json, fail
    from comfyfleet.errors import SandboxError
    from comfyfleet.sandbox.vast import process
    from comfyfleet.util.processes import pid_alive

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    folder = _state_dir(ctx, state_dir)
    running = process.read_running(folder)
    if running is not None:
        if as_json:
            emit_json({"already_running": True, **running.public()})
        else:
            typer.echo(f"the sandbox is already running at {running.url} (pid {running.pid})")
        return
    if exit_with is not None and not pid_alive(exit_with):
        raise typer.BadParameter(f"no process with pid {exit_with} runs", param_hint="--exit-with")
    options: dict[str, Any] = {
        "port": port, "speed": speed, "seed": seed, "credit": credit, "hosts": not no_hosts,
        "exit_with": exit_with,
    }  # fmt: skip
    if detach:
        try:
            running = process.start_detached(folder, **options)
        except SandboxError as exc:
            fail(exc, as_json=as_json)
        _show_started(running, as_json)
        return

    def ready(info: process.RunningSandbox) -> None:
        _show_started(info, as_json)
        if not as_json:
            typer.echo("Ctrl+C stops it.", err=True)

    try:
        asyncio.run(process.serve(folder, ready=ready, **options))
    except SandboxError as exc:
        fail(exc, as_json=as_json)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _show_started(running: object, as_json: bool) -> None:
    from comfyfleet.cli.common import emit_json
    from comfyfleet.sandbox.vast.process import RunningSandbox

    assert isinstance(running, RunningSandbox)
    if as_json:
        emit_json({"already_running": False, **running.public()})
        return
    typer.echo(f"sandbox Vast API: {running.url}")
    typer.echo(f"API key:          {running.api_key}")
    typer.echo(f"speed:            {running.speed:g}x   pid: {running.pid}")
    typer.echo(f"state:            {running.state_dir}")


@app.command("status")
def status(
    ctx: typer.Context,
    state_dir: Path | None = _STATE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the running sandbox: URL, key, speed, uptime, instances and balance."""
    from comfyfleet.cli.common import emit_json, fail
    from comfyfleet.errors import SandboxError
    from comfyfleet.sandbox.vast import process

    folder = _state_dir(ctx, state_dir)
    running = process.read_running(folder)
    if running is None:
        if as_json:
            emit_json({"running": False, "state_dir": str(folder)})
        else:
            typer.echo(f"the sandbox is not running (state dir {folder})", err=True)
        raise typer.Exit(1)
    try:
        info = process.status(running)
    except SandboxError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        emit_json(info)
        return
    _show_status(info)


def _show_status(info: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    uptime = float(str(info["uptime"]))
    console.print(f"sandbox Vast API: {info['url']}  (pid {info['pid']}, up {uptime:.0f} s)")
    console.print(f"API key:          {info['api_key']}")
    console.print(f"speed:            {info['speed']}x   state: {info['state_dir']}")
    console.print(
        f"credit:           ${float(str(info['credit'])):.4f}   "
        f"billing now: ${float(str(info['billing_per_hour'])):.4f}/h"
    )
    instances = info["instances"]
    assert isinstance(instances, list)
    if not instances:
        console.print("no instances")
        return
    table = Table("id", "label", "status", "gpu", "$/h now", "cost so far")
    for row in instances:
        table.add_row(
            str(row["id"]),
            row["label"] or "",
            f"{row['actual_status'] or 'creating'} ({row['intended_status']})",
            f"{row['num_gpus']}x {row['gpu_name']}",
            f"{row['dph_now']:.4f}",
            f"{row['cost']:.4f}",
        )
    console.print(table)


@app.command("stop")
def stop(
    ctx: typer.Context,
    state_dir: Path | None = _STATE_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Stop the running sandbox and every instance host it started."""
    from comfyfleet.cli.common import emit_json
    from comfyfleet.sandbox.vast import process

    folder = _state_dir(ctx, state_dir)
    stopped = process.stop_running(folder)
    if as_json:
        emit_json({"stopped": stopped is not None, "pid": stopped.pid if stopped else None})
    elif stopped is None:
        typer.echo("the sandbox is not running")
    else:
        typer.echo(f"stopped the sandbox at {stopped.url} (pid {stopped.pid})")
