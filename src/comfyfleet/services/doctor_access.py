"""How the doctor and the queue commands reach a target: ComfyUI over HTTP, and for an
instance also its shell over SSH (layout detected once).

    async with open_access("studio", settings, open_cloud=opener) as access:
        access.client          # ComfyClient through the instance's token proxy
        access.ssh             # SshSide, or None (a URL target, or SSH failed: access.ssh_error)

A plain URL gets HTTP only, on the real clock. An instance is looked up on the cloud (its
endpoints refreshed), reached through `services.endpoints.comfy_endpoint`, and SSH is opened
with `services.remote_ops.open_session`; if SSH fails the HTTP side still works and the error
is kept for the checks that needed it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import Settings
from comfyfleet.errors import ComfyError, LayoutNotDetected, RemoteError, UsageError
from comfyfleet.models.vast import Instance
from comfyfleet.remote import manage
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.remote_ops import live_instance, open_session
from comfyfleet.services.targets import CloudOpener, is_url, url_target
from comfyfleet.util.clock import Clock, SystemClock

RESTART_TIMEOUT = 600.0  # cloud seconds a restarted ComfyUI may take to answer


@dataclass
class SshSide:
    conn: SshConnection
    layout: InstanceLayout


@dataclass
class Access:
    """An open way to one target (see the module docstring)."""

    ref: str  # as the user named it (fix texts quote it)
    display: str  # safe to print: never holds the token
    client: ComfyClient
    clock: Clock
    settings: Settings
    state_dir: Path  # where remembered observations live (the profile's data folder)
    instance: Instance | None = None
    ssh: SshSide | None = None
    ssh_error: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def can_restart(self) -> bool:
        return self.ssh is not None and self.ssh.layout.restart_command is not None

    def need_ssh(self, what: str) -> SshSide:
        """The SSH side, or a UsageError saying `what` needs it."""
        if self.ssh is not None:
            return self.ssh
        why = self.ssh_error or "the target is a URL, not an instance"
        raise UsageError(f"{what} needs SSH to the instance: {why}")

    def client_as(self, client_id: str | None) -> ComfyClient:
        """Another client of the same server under `client_id` (to queue a prompt in the name
        of the client that first queued it, so its events reach that client)."""
        return ComfyClient(
            self.client.base_url,
            token=self.token,
            settings=self.settings.comfy,
            clock=self.clock,
            client_id=client_id,
        )

    async def answers(self) -> bool:
        """Does ComfyUI answer now?"""
        try:
            await self.client.system_stats()
        except ComfyError:
            return False
        return True

    async def restart(self, command: str | None = None) -> float:
        """Restart ComfyUI (or run `command`, which restarts it) and wait until it answers;
        the seconds it took."""
        ssh = self.need_ssh("restarting ComfyUI")
        layout = (
            ssh.layout
            if command is None
            else dataclasses.replace(ssh.layout, restart_command=command)
        )
        return await manage.restart_comfy(
            ssh.conn, layout, self.answers, clock=self.clock, timeout=RESTART_TIMEOUT
        )


@contextlib.asynccontextmanager
async def open_access(
    target: str,
    settings: Settings,
    *,
    token: str | None = None,
    open_cloud: CloudOpener | None = None,
    ssh: bool = True,
) -> AsyncIterator[Access]:
    """Open `target` (a ComfyUI URL, or an instance id or name); see the module docstring."""
    if is_url(target) or open_cloud is None:
        url = url_target(target, settings, token=token)
        async with ComfyClient(url.url, token=url.token, settings=settings.comfy) as client:
            yield Access(
                target,
                url.display,
                client,
                SystemClock(),
                settings,
                settings.data_dir(),
                token=url.token,
            )
        return
    async with open_cloud() as cloud, contextlib.AsyncExitStack() as stack:
        access = await _instance_access(cloud, target, stack, ssh)
        yield access


async def _instance_access(
    cloud: Cloud, ref: str, stack: contextlib.AsyncExitStack, ssh: bool
) -> Access:
    row, inst = await live_instance(cloud, ref)
    endpoint = comfy_endpoint(cloud, row)
    if endpoint is None or not row.live:
        raise UsageError(
            f"instance {ref!r} has no ComfyUI endpoint (status {row.status.value})",
            hint="start it (comfyfleet start ID) and wait until it is running",
        )
    client = await stack.enter_async_context(
        ComfyClient(
            endpoint.url, token=endpoint.token, settings=cloud.settings.comfy, clock=cloud.clock
        )
    )
    access = Access(
        ref,
        f"{row.display_name} ({endpoint.url})",
        client,
        cloud.clock,
        cloud.settings,
        cloud.config.data_dir,
        instance=inst,
        token=endpoint.token,
    )
    if ssh:
        try:
            session = await stack.enter_async_context(open_session(cloud, ref))
            access.ssh = SshSide(session.conn, await session.layout(cloud))
        except (RemoteError, LayoutNotDetected) as exc:
            access.ssh_error = exc.message
    return access
