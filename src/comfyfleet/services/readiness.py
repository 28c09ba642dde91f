"""Is an instance really ready? Running on Vast, SSH answering, ComfyUI answering.

Vast reports `running` long before ComfyUI answers: its image starts ComfyUI only after
provisioning, and the SSH daemon may lag the container. So readiness is three gates, checked
in order against one deadline on the cloud's clock.
"""

from __future__ import annotations

from collections.abc import Callable

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.errors import ComfyError, ComfyfleetError, VastError
from comfyfleet.models.vast import Instance, InstanceStatus
from comfyfleet.remote.banner import banner_check
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint

FATAL = {InstanceStatus.FAILED, InstanceStatus.OFFLINE, InstanceStatus.DESTROYED}


class NotReady(ComfyfleetError):
    """The instance did not become ready before the deadline, or failed on the way."""

    exit_code = 6

    def __init__(self, message: str, *, fatal: bool, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.fatal = fatal


Progress = Callable[[str], None]


async def wait_ready(
    cloud: Cloud, vast_id: int, *, deadline: float, progress: Progress
) -> Instance:
    """Wait until instance `vast_id` is running, SSH answers and ComfyUI answers.

    Status changes are recorded in the database as they are seen. Raises NotReady (fatal when
    the instance failed, went offline or vanished; not fatal on timeout).
    """
    poll = cloud.settings.vast.poll_interval
    last_note: str | None = None
    last_gate: str | None = None
    gate = "running"
    while True:
        if cloud.clock.monotonic() >= deadline:
            raise NotReady(
                f"instance {vast_id} was not ready in time (still waiting for {gate})",
                fatal=False,
                hint="a slow host or a large image; another offer may be faster",
            )
        inst = await cloud.vast.show_instance(vast_id)
        if inst is None:
            raise NotReady(f"instance {vast_id} vanished while starting", fatal=True)
        cloud.db.instances.upsert_from_vast(inst)
        status = inst.status
        note = f"{status.value}" + (f" ({inst.status_msg})" if inst.status_msg else "")
        if note != last_note:
            progress(f"instance {vast_id}: {note}")
            last_note = note
        if status in FATAL:
            raise NotReady(
                f"instance {vast_id} is {status.value}: {inst.status_msg or 'no detail'}",
                fatal=True,
            )
        if status is InstanceStatus.RUNNING:
            gate = await _next_gate(cloud, inst)
            if gate == "ready":
                return inst
            if gate != last_gate:
                progress(f"instance {vast_id}: waiting for {gate}")
                last_gate = gate
        await cloud.clock.sleep(poll)


async def _next_gate(cloud: Cloud, inst: Instance) -> str:
    """The first readiness gate not passed yet: "SSH", "ComfyUI" or "ready"."""
    ssh = inst.ssh_endpoint()
    if ssh is None or not await banner_check(ssh[0], ssh[1], timeout=5.0):
        return "SSH"
    endpoint = comfy_endpoint(cloud, inst)
    if endpoint is None:
        return "ComfyUI"
    try:
        async with ComfyClient(
            endpoint.url, token=endpoint.token, settings=cloud.settings.comfy, clock=cloud.clock
        ) as client:
            await client.system_stats()
    except (ComfyError, VastError):
        return "ComfyUI"
    return "ready"
