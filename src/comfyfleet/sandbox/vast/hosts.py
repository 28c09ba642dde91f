"""Launching one sandbox host per running instance (its own process: SSH, ComfyUI, proxy).

The host package (`comfyfleet.sandbox.host`) is reached through a fixed interface:
`start_host(HostSpec) -> HostProcess` with `pid`, `ssh_port`, `proxy_port`, `comfy_port`,
`alive()`, `stop()` and `wait_ready(timeout)`. It is imported when the first host starts, so
the cloud runs without it when hosts are off. Each instance gets a folder
`<instances dir>/<id>/` with the host's `root/` and the `authorized_keys` file the host
re-reads on every SSH attempt (the account's keys plus keys attached to that instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from comfyfleet.sandbox.vast.actions import authorized_keys
from comfyfleet.sandbox.vast.instance import Instance
from comfyfleet.sandbox.vast.render import SANDBOX_IP
from comfyfleet.sandbox.vast.world import HostEffect, World

log = logging.getLogger(__name__)

HOST_MODULE = "comfyfleet.sandbox.host"


@dataclass(frozen=True)
class HostRequest:
    """What a host needs; the fields of the host package's HostSpec."""

    instance_id: int
    root: Path
    authorized_keys_file: Path
    web_token: str
    env: dict[str, str]
    speed: float
    gpu_name: str
    num_gpus: int
    image: str
    provisioning_seconds: float


class HostHandle(Protocol):
    pid: int
    ssh_port: int
    proxy_port: int

    def alive(self) -> bool: ...

    def stop(self) -> None: ...

    def wait_ready(self, timeout: float) -> None: ...


class HostLauncher(Protocol):
    def launch(self, request: HostRequest) -> HostHandle: ...


class ProcessHostLauncher:
    """Starts `python -m comfyfleet.sandbox.host` through the host package's start_host."""

    def launch(self, request: HostRequest) -> HostHandle:
        module: Any = importlib.import_module(HOST_MODULE)
        spec_type = module.HostSpec
        accepted = {f.name for f in dataclasses.fields(spec_type)}
        values = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        handle: HostHandle = module.start_host(
            spec_type(**{k: v for k, v in values.items() if k in accepted})
        )
        return handle


def host_env(world: World, inst: Instance) -> dict[str, str]:
    """The container environment: the user's env, then what Vast's platform sets."""
    env = inst.user_env()
    env.update(
        CONTAINER_ID=str(inst.id),
        CONTAINER_API_KEY=inst.api_key,
        VAST_CONTAINERLABEL=f"C.{inst.id}",
        PUBLIC_IPADDR=SANDBOX_IP,
        GPU_COUNT=str(inst.num_gpus),
        JUPYTER_TOKEN=inst.jupyter_token,
        OPEN_BUTTON_TOKEN=inst.open_button_token,  # the platform always overwrites it
    )
    if world.ssh_keys:
        env["SSH_PUBLIC_KEY"] = world.ssh_keys[0].key
    return env


class HostManager:
    """Runs the world's host effects: one sequence of start/stop/wipe per instance."""

    def __init__(
        self,
        world: Callable[[], World],
        launcher: HostLauncher,
        instances_dir: Path,
        speed: float,
        ready_timeout: float = 120.0,
    ) -> None:
        self._world = world
        self.launcher = launcher
        self.instances_dir = instances_dir
        self.speed = speed
        self.ready_timeout = ready_timeout
        self.handles: dict[int, HostHandle] = {}
        self._reported: dict[int, tuple[int, int]] = {}  # (ssh, proxy) the API shows
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_change: Callable[[], None] = lambda: None

    def root(self, instance_id: int) -> Path:
        return self.instances_dir / str(instance_id) / "root"

    def keys_file(self, instance_id: int) -> Path:
        return self.instances_dir / str(instance_id) / "authorized_keys"

    def write_keys(self, inst: Instance) -> None:
        path = self.keys_file(inst.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(authorized_keys(self._world(), inst), "utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def sync_keys(self) -> None:
        for inst in self._world().instances.values():
            if self.keys_file(inst.id).parent.exists():
                self.write_keys(inst)

    def dispatch(self, effects: list[HostEffect]) -> None:
        for effect in effects:
            task = asyncio.create_task(self._run(effect))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, effect: HostEffect) -> None:
        lock = self._locks.setdefault(effect.instance_id, asyncio.Lock())
        async with lock:
            try:
                if effect.kind == "start":
                    await self._start(effect)
                elif effect.kind == "stop":
                    await self._stop(effect.instance_id)
                elif effect.kind == "wipe":
                    await self._stop(effect.instance_id)
                    folder = self.instances_dir / str(effect.instance_id)
                    await asyncio.to_thread(shutil.rmtree, folder, True)
            except Exception:  # a host failure must not take the cloud down
                log.exception("host %s for instance %s failed", effect.kind, effect.instance_id)
        self.on_change()

    async def _stop(self, instance_id: int) -> None:
        handle = self.handles.pop(instance_id, None)
        if handle is not None:
            await asyncio.to_thread(handle.stop)

    async def _start(self, effect: HostEffect) -> None:
        world = self._world()
        inst = world.instances.get(effect.instance_id)
        if inst is None or inst.host_generation != effect.generation:
            return
        await self._stop(inst.id)
        self.write_keys(inst)
        request = HostRequest(
            instance_id=inst.id,
            root=self.root(inst.id),
            authorized_keys_file=self.keys_file(inst.id),
            web_token=inst.web_token,
            env=host_env(world, inst),
            speed=self.speed,
            gpu_name=str(world.machines[inst.machine_id].base["gpu_name"]),
            num_gpus=inst.num_gpus,
            image=inst.image,
            provisioning_seconds=world.knobs.durations.provisioning,
        )
        request.root.mkdir(parents=True, exist_ok=True)
        try:
            handle = await asyncio.to_thread(self.launcher.launch, request)
            await asyncio.to_thread(handle.wait_ready, self.ready_timeout)
        except Exception as exc:  # noqa: BLE001 - any launch failure is the container's error
            log.warning("host for instance %s did not start: %s", inst.id, exc)
            world.host_failed(inst.id, effect.generation, str(exc) or type(exc).__name__)
            return
        self.handles[inst.id] = handle
        self._reported[inst.id] = (handle.ssh_port, handle.proxy_port)
        ports = {"ssh_port": handle.ssh_port, "proxy_port": handle.proxy_port, "pid": handle.pid}
        if not world.host_started(inst.id, effect.generation, **ports):
            await self._stop(inst.id)

    def check_alive(self) -> None:
        """Report hosts that died on their own (the container crashed) or moved their ports."""
        world = self._world()
        for instance_id, handle in list(self.handles.items()):
            inst = world.instances.get(instance_id)
            if inst is None:
                continue
            if not handle.alive():
                self.handles.pop(instance_id, None)
                world.host_exited(instance_id, inst.host_generation)
                continue
            try:  # a host knob may have moved SSH: Vast would show the new port
                ports = (handle.ssh_port, handle.proxy_port)
            except Exception:  # noqa: BLE001 - endpoints being rewritten: look again later
                continue
            if ports != self._reported.get(instance_id):
                self._reported[instance_id] = ports
                world.host_started(
                    instance_id,
                    inst.host_generation,
                    ssh_port=ports[0],
                    proxy_port=ports[1],
                    pid=handle.pid,
                )

    async def close(self) -> None:
        """Wait for pending work, then stop every host."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for instance_id in list(self.handles):
            with contextlib.suppress(Exception):
                await self._stop(instance_id)
