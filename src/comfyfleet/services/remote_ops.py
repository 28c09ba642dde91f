"""Reaching an instance over SSH: its key, its target, a connection, its layout.

The comfyfleet key (or the user's) is registered with the Vast account, which installs it on
every instance; an instance that refuses it gets it attached and is tried once more. Host keys
are pinned per instance on first contact. Keepalives follow the cloud's clock speed, so the
sandbox's accelerated time behaves like real time. Steps that change the instance's ComfyUI
hold its change lock (`changing`), so two commands never install into one venv at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import PurePosixPath

from comfyfleet.config import RemoteSettings
from comfyfleet.errors import SshAuthFailed, SshUnreachable, UsageError
from comfyfleet.models.vast import Instance, InstanceStatus
from comfyfleet.remote.changelock import ChangeLock, change_lock
from comfyfleet.remote.keys import KeyPair, ensure_key, load_key
from comfyfleet.remote.layout import InstanceLayout, LayoutOverrides, detect_layout
from comfyfleet.remote.ssh import SshConnection, connect
from comfyfleet.remote.sshconfig import alias_for
from comfyfleet.remote.target import SshTarget, known_hosts_file
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.instances import find, observe
from comfyfleet.state import InstanceRow
from comfyfleet.util.lines import Line


def local_key(cloud: Cloud) -> KeyPair:
    """The key we connect with: the user's (`remote.key_path`) or comfyfleet's own."""
    chosen = cloud.settings.remote.key_path
    return load_key(chosen) if chosen else ensure_key(cloud.settings.config_dir())


def _key_material(public_key: str) -> str:
    parts = public_key.split()
    return parts[1] if len(parts) > 1 else public_key.strip()


async def ensure_account_key(cloud: Cloud) -> KeyPair:
    """Our key, registered with the Vast account (so every new instance gets it)."""
    key = local_key(cloud)
    mine = _key_material(key.public_key_text())
    registered = await cloud.vast.ssh_keys()
    if not any(_key_material(k.public_key) == mine for k in registered):
        await cloud.vast.add_ssh_key(key.public_key_text())
    return key


def alias_of(row: InstanceRow, inst: Instance | None = None, taken: Collection[str] = ()) -> str:
    """A readable ssh Host alias from the instance's name, GPU and location."""
    return alias_for(
        str(row.vast_id),
        label=row.name,
        gpu_name=row.gpu_name or "",
        location=(inst.geolocation if inst else None) or "",
        taken=taken,
    )


def target_for(
    cloud: Cloud, row: InstanceRow, inst: Instance, key: KeyPair, *, taken: Collection[str] = ()
) -> SshTarget:
    """The SSH target of a running instance (direct port 22 when open, else Vast's proxy)."""
    endpoint = inst.ssh_endpoint()
    if endpoint is None:
        raise UsageError(
            f"instance {row.display_name} has no SSH endpoint yet (status {inst.status.value})",
            hint="wait until it is running (comfyfleet ls), or start it",
        )
    ref = str(row.vast_id)
    return SshTarget(
        host=endpoint[0],
        port=endpoint[1],
        key_path=key.private_path,
        known_hosts_path=known_hosts_file(cloud.settings.config_dir(), ref),
        alias=alias_of(row, inst, taken),
        instance_ref=ref,
    )


def keepalive(cloud: Cloud) -> float:
    # Real seconds: under the sandbox's clock 30 simulated seconds pass much faster.
    return max(0.5, cloud.settings.remote.keepalive / cloud.clock.speed)


@dataclass
class Session:
    """An open SSH connection to one instance."""

    row: InstanceRow
    instance: Instance
    target: SshTarget
    conn: SshConnection
    key: KeyPair

    async def layout(self, cloud: Cloud) -> InstanceLayout:
        return await detect_layout(self.conn, layout_overrides(cloud))


def layout_overrides(cloud: Cloud) -> LayoutOverrides:
    r = cloud.settings.remote
    path = PurePosixPath
    return LayoutOverrides(
        comfy_dir=path(r.comfy_dir) if r.comfy_dir else None,
        comfy_port=r.comfy_port,
        venv=path(r.venv) if r.venv else None,
        log_file=path(r.log_file) if r.log_file else None,
        restart_command=r.restart_command,
    )


async def live_instance(cloud: Cloud, ref: str) -> tuple[InstanceRow, Instance]:
    """The tracked instance `ref`, freshly read from Vast (endpoints can change)."""
    row, inst = await observe(cloud, await find(cloud, ref))
    if inst is None:
        raise UsageError(f"instance {ref!r} is gone from Vast", hint="comfyfleet ls")
    return row, inst


_STARTING = frozenset(
    {
        InstanceStatus.CREATING,
        InstanceStatus.LOADING,
        InstanceStatus.SCHEDULING,
        InstanceStatus.REBOOTING,
    }
)


def require_running(row: InstanceRow, inst: Instance) -> None:
    """Raise a clear error when instance `inst` cannot answer SSH in its state (stopped:
    UsageError; starting or its host offline: SshUnreachable, worth a retry)."""
    status = inst.status
    name = row.display_name
    if status in (InstanceStatus.RUNNING, InstanceStatus.UNKNOWN):
        return
    if status is InstanceStatus.STOPPED:
        raise UsageError(
            f"instance {name} is stopped", hint=f"start it: comfyfleet start {row.vast_id}"
        )
    if status is InstanceStatus.FAILED:
        raise UsageError(
            f"instance {name} failed to start: {inst.status_msg or 'no message'}",
            hint=f"destroy it (comfyfleet destroy {row.vast_id}) and rent another",
        )
    if status in _STARTING:
        raise SshUnreachable(
            f"instance {name} is not running yet ({status.value}): SSH answers once it runs",
            hint="wait until `comfyfleet ls` shows it running, then retry",
        )
    raise SshUnreachable(
        f"instance {name} is {status.value}: its host lost contact with Vast",
        hint="retry later, or destroy it and rent another",
    )


@contextlib.asynccontextmanager
async def open_session(cloud: Cloud, ref: str) -> AsyncIterator[Session]:
    """Connect to instance `ref`; attaches our key once if the instance refuses it.

    An instance that is not running fails at once with what to do (`require_running`)."""
    row, inst = await live_instance(cloud, ref)
    require_running(row, inst)
    key = await ensure_account_key(cloud)
    target = target_for(cloud, row, inst, key)
    try:
        conn = await connect(target, clock=cloud.clock, keepalive=keepalive(cloud))
    except SshAuthFailed:
        # Keys registered after the instance was created reach it only when attached.
        await cloud.vast.attach_ssh_key(inst.id, key.public_key_text())
        conn = await connect(target, clock=cloud.clock, keepalive=keepalive(cloud))
    try:
        yield Session(row, inst, target, conn, key)
    finally:
        await conn.aclose()


@contextlib.asynccontextmanager
async def changing(
    settings: RemoteSettings, conn: SshConnection, layout: InstanceLayout, what: str, on_line: Line
) -> AsyncIterator[ChangeLock]:
    """Hold the instance's change lock (`remote.changelock`) for one step of `what`.

    Waits `settings.change_wait` seconds for another command's change, telling `on_line`.
    """
    async with change_lock(conn, layout, what, wait=settings.change_wait, on_wait=on_line) as lock:
        if not lock.locked:
            on_line(
                "warning: the instance has no flock(1): this change does not wait for other "
                "comfyfleet commands changing it"
            )
        yield lock
