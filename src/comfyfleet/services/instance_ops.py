"""Managing an instance from the terminal: exec, GPU, disk, processes, logs, restart, pip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.errors import ComfyError
from comfyfleet.remote import manage
from comfyfleet.remote.commands import stream
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.parsing import DiskUsage, GpuInfo, ProcessInfo
from comfyfleet.remote.sshconfig import HostEntry, SyncResult, sync
from comfyfleet.remote.target import config_include_dir
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.reconcile import reconcile
from comfyfleet.services.remote_ops import (
    changing,
    ensure_account_key,
    open_session,
    target_for,
)
from comfyfleet.util.lines import Line


async def exec_command(cloud: Cloud, ref: str, command: str, on_out: Line, on_err: Line) -> int:
    """Run a shell command line on the instance, streaming its output; its exit code."""
    async with open_session(cloud, ref) as session:
        return await stream(session.conn, command, on_out, on_err, lines=False)


async def gpu(cloud: Cloud, ref: str) -> list[GpuInfo]:
    async with open_session(cloud, ref) as session:
        return await manage.gpu_status(session.conn, await session.layout(cloud))


async def disk(cloud: Cloud, ref: str) -> dict[str, DiskUsage | None]:
    """Usage of the root filesystem, the workspace and ComfyUI's models folder."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        paths = [PurePosixPath("/"), layout.workspace, layout.comfy_dir / "models"]
        return await manage.disk_usage(session.conn, list(dict.fromkeys(paths)))


async def ps(cloud: Cloud, ref: str) -> list[ProcessInfo]:
    async with open_session(cloud, ref) as session:
        return await manage.processes(session.conn, await session.layout(cloud))


async def logs(cloud: Cloud, ref: str, *, lines: int, follow: bool, on_line: Line) -> int:
    """ComfyUI's log: the last `lines` lines, then (with `follow`) new ones until cancelled."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        if follow:
            return await manage.follow_log(session.conn, layout, on_line, lines)
        for line in (await manage.tail_log(session.conn, layout, lines)).splitlines():
            on_line(line)
        return 0


async def comfy_answers(cloud: Cloud, ref: str) -> bool:
    """Does ComfyUI answer through the instance's token proxy now?"""
    from comfyfleet.services.instances import find

    row = await find(cloud, ref)
    endpoint = comfy_endpoint(cloud, row)
    if endpoint is None:
        return False
    try:
        async with ComfyClient(
            endpoint.url, token=endpoint.token, settings=cloud.settings.comfy, clock=cloud.clock
        ) as client:
            await client.system_stats()
    except ComfyError:
        return False
    return True


@dataclass(frozen=True)
class Restarted:
    layout: InstanceLayout
    seconds: float


async def restart(cloud: Cloud, ref: str, *, timeout: float = 600.0) -> Restarted:
    """Restart ComfyUI (supervisorctl on Vast's image, a fallback elsewhere); returns once it
    answers again. `timeout` is in the cloud's (simulated) seconds."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        seconds = await manage.restart_comfy(
            session.conn,
            layout,
            lambda: comfy_answers(cloud, ref),
            clock=cloud.clock,
            timeout=timeout,
        )
        return Restarted(layout, seconds)


#: pip subcommands that change the venv: they take the instance's change lock.
PIP_CHANGES = frozenset({"install", "uninstall"})


async def pip(cloud: Cloud, ref: str, args: Sequence[str], on_out: Line, on_err: Line) -> int:
    """The instance venv's pip (never a global one) with `args`; pip's exit code.

    `install` and `uninstall` wait their turn behind other changes to the instance."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        if not args or args[0] not in PIP_CHANGES:
            return await manage.pip(session.conn, layout, args, on_out, on_err)
        what = "pip " + " ".join(args)[:120]
        async with changing(
            cloud.settings.remote, session.conn, layout, what, lambda text: on_err(text + "\n")
        ):
            return await manage.pip(session.conn, layout, args, on_out, on_err)


def user_ssh_config(cloud: Cloud) -> Path | None:
    if not cloud.settings.remote.manage_ssh_config:
        return None
    return cloud.settings.remote.ssh_config or Path.home() / ".ssh" / "config"


async def ssh_config_sync(cloud: Cloud) -> SyncResult:
    """One generated ssh config file per running instance, others pruned, Include ensured."""
    await reconcile(cloud)
    key = await ensure_account_key(cloud)
    entries: list[HostEntry] = []
    taken: set[str] = set()
    for row in cloud.db.instances.live():
        if row.vast_id is None:
            continue
        inst = await cloud.vast.show_instance(row.vast_id)
        if inst is None or inst.ssh_endpoint() is None:
            continue
        entry = HostEntry.from_target(target_for(cloud, row, inst, key, taken=taken))
        taken.add(entry.alias)
        entries.append(entry)
    return sync(
        config_include_dir(cloud.settings.config_dir()), entries, user_config=user_ssh_config(cloud)
    )


async def forget_host_key(cloud: Cloud, ref: str) -> int:
    """Drop the host key pinned for instance `ref` (after it was legitimately re-created);
    the next connection pins the key it then offers. Returns how many pins were removed."""
    from comfyfleet.remote.hostkeys import forget
    from comfyfleet.remote.target import known_hosts_file
    from comfyfleet.services.instances import find

    row = await find(cloud, ref)
    return forget(known_hosts_file(cloud.settings.config_dir(), str(row.vast_id)))
