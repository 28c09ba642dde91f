"""The `connect` loop: open tunnels, show them, open the browser, run until Ctrl+C."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.remote.tunnel_state import TunnelState


def run_connect(
    ctx: typer.Context, refs: list[str], *, port: int | None, remote_port: int | None, browser: bool
) -> None:
    import webbrowser

    from comfyfleet.cli.cloud import cloud_config
    from comfyfleet.cli.console import stderr_console
    from comfyfleet.cli.render_remote import print_tunnels
    from comfyfleet.services.cloud import open_cloud
    from comfyfleet.services.connect import open_tunnels, tunnel_group
    from comfyfleet.services.instances import list_instances

    settings = global_options(ctx).settings()
    console = stderr_console()

    def on_state(state: TunnelState) -> None:
        note = f" ({state.last_error})" if state.last_error else ""
        console.print(
            f"tunnel to {state.instance_ref}: {state.status} on {state.url}{note}", markup=False
        )

    async def _main() -> int:
        async with open_cloud(cloud_config(settings)) as cloud:
            targets = refs
            if not targets:
                views, _ = await list_instances(cloud)
                targets = [str(v.row.vast_id) for v in views if v.row.status.value == "running"]
                if not targets:
                    console.print("no running instance to connect to (comfyfleet up)")
                    return 1
            async with tunnel_group(cloud, on_state) as group:
                opened = await open_tunnels(
                    cloud, group, targets, local_port=port, remote_port=remote_port
                )
                print_tunnels(opened)
                if browser:
                    for item in opened:
                        if item.ready:
                            webbrowser.open(item.tunnel.url)
                console.print("Ctrl+C closes the tunnels", markup=False)
                await asyncio.Event().wait()
        return 0

    try:
        code = run_async(_main)
    except typer.Exit as done:
        if done.exit_code == 130:
            console.print("tunnels closed", markup=False)
            raise typer.Exit(0) from None
        raise
    raise typer.Exit(code)
