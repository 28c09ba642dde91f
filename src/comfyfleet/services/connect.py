"""`comfyfleet connect`: self-healing tunnels from local ports to instances' ComfyUI.

Each tunnel forwards 127.0.0.1:<local> to ComfyUI itself on the instance (the port the
detected layout gives: 18188 behind Vast's token proxy, 8188 on other images), reconnects by
itself when the connection drops or the instance's SSH endpoint changes (re-read from Vast),
and records its state in a small file that `comfyfleet ls` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfyfleet.remote.keys import KeyPair
from comfyfleet.remote.target import SshTarget
from comfyfleet.remote.tunnel import Tunnel, TunnelGroup, wait_http_ready
from comfyfleet.remote.tunnel_state import TunnelState
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.remote_ops import keepalive, live_instance, open_session, target_for


def tunnel_dir(cloud: Cloud) -> Path:
    """Where tunnel state files live (per profile)."""
    return cloud.config.data_dir / "tunnels"


@dataclass(frozen=True)
class Opened:
    """One tunnel, ready: ComfyUI answered through it."""

    ref: str
    name: str
    tunnel: Tunnel
    ready: bool


async def open_tunnels(
    cloud: Cloud,
    group: TunnelGroup,
    refs: Sequence[str],
    *,
    local_port: int | None = None,
    remote_port: int | None = None,
    ready_timeout: float = 120.0,
) -> list[Opened]:
    """Open one tunnel per instance in `group` (local ports `local_port`, +1, ... or free
    ones) and wait until ComfyUI answers through each (`ready` False past the timeout)."""
    opened: list[Opened] = []
    for index, ref in enumerate(refs):
        async with open_session(cloud, ref) as session:
            port = remote_port or (await session.layout(cloud)).comfy_port
            key, row = session.key, session.row

        async def resolve(ref: str = ref, key: KeyPair = key) -> SshTarget:
            fresh_row, inst = await live_instance(cloud, ref)
            return target_for(cloud, fresh_row, inst, key)

        wanted = local_port + index if local_port else 0
        tunnel = await group.open(str(row.vast_id), resolve, port, local_port=wanted)
        opened.append(Opened(ref, row.display_name, tunnel, False))
    await group.wait_all_up(ready_timeout)
    result = []
    for item in opened:
        ready = await wait_http_ready(item.tunnel.url, ready_timeout)
        result.append(Opened(item.ref, item.name, item.tunnel, ready))
    return result


def tunnel_group(cloud: Cloud, on_state: Callable[[TunnelState], None] | None) -> TunnelGroup:
    return TunnelGroup(
        clock=cloud.clock,
        state_dir=tunnel_dir(cloud),
        on_state=on_state,
        keepalive=keepalive(cloud),
        endpoint_check=60.0,
    )
