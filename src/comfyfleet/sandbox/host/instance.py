"""`InstanceHost`: everything one simulated Vast instance runs, in one process.

Boot: lay out the root (first boot: the image's venv and stand-in packages), pick loopback
ports, start the control endpoint, SSH and the token proxy, write `/etc/environment` and the
endpoints file, then run provisioning (first boot only) and the `comfyui` program. Stop
(SIGTERM, or the parent going away): ComfyUI's process group, every SSH session's group,
then the listeners; the endpoints file is removed last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfyfleet.sandbox.host.control import ControlServer
from comfyfleet.sandbox.host.gpus import gpu_model
from comfyfleet.sandbox.host.layout import (
    HostLayout,
    Ports,
    container_label,
    web_password,
    with_port,
)
from comfyfleet.sandbox.host.proxy import TokenProxy
from comfyfleet.sandbox.host.pythons import create_env, install_image_packages
from comfyfleet.sandbox.host.shims import write_shims
from comfyfleet.sandbox.host.spec import ENDPOINTS_FILE, Endpoints, HostSpec
from comfyfleet.sandbox.host.sshd import SshService
from comfyfleet.sandbox.host.supervisor import (
    ComfyProgram,
    ProgramStatus,
    ProvisioningGate,
    comfy_command,
)
from comfyfleet.sandbox.host.wheelhouse import ensure_wheelhouse
from comfyfleet.util.clock import ScaledClock

log = logging.getLogger(__name__)


COMFY_PORT_FILE = ".sandbox-comfy-port.json"


def free_port(preferred: int = 0) -> int:
    """A loopback port free right now (ComfyUI binds it later, when it starts): `preferred`
    when it is free, else any."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the server will (aiohttp does): a port whose old connections linger in
            # TIME_WAIT is free to listen on again.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free loopback port")


def _previous_comfy_port(root: Path) -> int:
    """The internal ComfyUI port of this root's last start (0 if none): inside an instance
    ComfyUI's port never changes across restarts, only the public mapping does."""
    try:
        return int(json.loads((root / COMFY_PORT_FILE).read_text())["comfy_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class InstanceHost:
    def __init__(self, spec: HostSpec, cache_dir: Path) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self.layout = HostLayout(spec.root)
        self.clock = ScaledClock(spec.speed)
        self.gpu = gpu_model(spec.gpu_name)
        self.comfy_port = 0
        self.env: dict[str, str] = {}
        self.control = ControlServer(self)
        self.layout.make_dirs()
        self.ssh = SshService(
            self.layout.host_key,
            spec.authorized_keys_file,
            lambda: self.env,
            self.layout.workspace,
            self.layout.home / ".bashrc",
            self.layout.home,
            self.clock,
            self._ssh_changed,
        )
        self.proxy: TokenProxy | None = None
        self.program: ComfyProgram | None = None
        self.gate: ProvisioningGate | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.time()

    # --- boot --------------------------------------------------------------------------------

    def prepare(self) -> Path:
        """Lay the root out (idempotent); returns the wheelhouse folder."""
        from comfyfleet.sandbox.comfy.layout import Layout

        layout = self.layout
        layout.make_dirs()
        wheelhouse = ensure_wheelhouse(self.cache_dir)
        create_env(layout.venv)
        create_env(layout.system_prefix)
        done = layout.venv / ".image-packages-installed"
        if not done.exists():  # first boot: the packages the image ships
            installed = install_image_packages(layout.venv, wheelhouse)
            done.write_text("\n".join(installed) + "\n")
            log.info("image venv: %s", ", ".join(installed))
        Layout(layout.comfy_dir).prepare()
        layout.write_pip_conf(wheelhouse)
        layout.write_bashrc()
        write_shims(layout)
        return wheelhouse

    async def start(self) -> Endpoints:
        wheelhouse = await asyncio.to_thread(self.prepare)
        spec, layout = self.spec, self.layout
        self.comfy_port = free_port(_previous_comfy_port(spec.root))
        (spec.root / COMFY_PORT_FILE).write_text(json.dumps({"comfy_port": self.comfy_port}))
        control_port = await self.control.start()
        ssh_port = await self.ssh.start()
        self.proxy = TokenProxy(
            self.comfy_port,
            {spec.web_token, web_password(spec)},
            cookie_name=f"{container_label(spec.instance_id)}_auth_token",
            username=spec.env.get("WEB_USERNAME", "vastai"),
            auth=_auth_enabled(spec.env),
        )
        ports = Ports(ssh=ssh_port, proxy=await self.proxy.start(), comfy=self.comfy_port)
        self.env = layout.environment(spec, ports, wheelhouse, self.gpu.name)
        layout.write_environment(self.env)
        layout.write_portal_yaml(ports)
        self.gate = ProvisioningGate(layout, self.clock, spec.provisioning_seconds)
        self._tasks.append(asyncio.create_task(self.gate.run(), name="provisioning"))
        self.program = ComfyProgram(
            layout,
            self.clock,
            self.gate,
            comfy_command(layout, spec.speed, self.env["COMFYUI_ARGS"]),
            self._comfy_env(),
            argv_for=self._comfy_argv,
        )
        self.program.start()
        endpoints = Endpoints(
            pid=os.getpid(),
            ssh_port=ssh_port,
            proxy_port=ports.proxy,
            comfy_port=self.comfy_port,
            control_port=control_port,
            host_key_fingerprint=self.ssh.fingerprint,
        )
        endpoints.write(layout.root)
        log.info(
            "host %s up: ssh %d, proxy %d, comfy %d, control %d",
            spec.instance_id,
            ssh_port,
            ports.proxy,
            self.comfy_port,
            control_port,
        )
        return endpoints

    def _comfy_env(self) -> dict[str, str]:
        import comfyfleet

        package_parent = str(Path(comfyfleet.__file__).resolve().parents[1])
        env = dict(self.env)
        env.update(
            {
                "VIRTUAL_ENV": str(self.layout.venv),
                "PATH": f"{self.layout.venv / 'bin'}:{env['PATH']}",
                "PYTHONPATH": package_parent,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _comfy_argv(self, env: Mapping[str, str]) -> list[str]:
        """The start script's command for this start: `$COMFYUI_ARGS` as the start sees it
        (`${WORKSPACE}/.env` may change it), on the host's internal port."""
        args = with_port(env.get("COMFYUI_ARGS", self.env["COMFYUI_ARGS"]), self.comfy_port)
        return comfy_command(self.layout, self.spec.speed, args)

    def _ssh_changed(self) -> None:
        current = Endpoints.read(self.layout.root)
        if current is not None:
            dataclasses.replace(
                current, ssh_port=self.ssh.port, host_key_fingerprint=self.ssh.fingerprint
            ).write(self.layout.root)

    # --- status ------------------------------------------------------------------------------

    def programs(self) -> list[ProgramStatus]:
        out = [] if self.program is None else [self.program.status()]
        out.append(ProgramStatus("caddy", "RUNNING", os.getpid(), time.time() - self._started, ""))
        return out

    def status(self) -> dict[str, Any]:
        program = self.program.status() if self.program is not None else None
        return {
            "instance_id": self.spec.instance_id,
            "pid": os.getpid(),
            "ssh_port": self.ssh.port,
            "ssh_listening": self.ssh.listening,
            "ssh_connections": len(self.ssh.connections),
            "proxy_port": self.proxy.port if self.proxy is not None else 0,
            "comfy_port": self.comfy_port,
            "provisioning": self.gate.in_progress if self.gate is not None else True,
            "comfyui": None
            if program is None
            else {
                "state": program.state,
                "pid": program.pid,
                "description": program.description,
            },
            "host_key_fingerprint": self.ssh.fingerprint,
        }

    # --- stop --------------------------------------------------------------------------------

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.program is not None:
            await self.program.stop()
        await self.ssh.close()
        if self.proxy is not None:
            await self.proxy.close()
        await self.control.close()
        (self.layout.root / ENDPOINTS_FILE).unlink(missing_ok=True)


def _auth_enabled(env: dict[str, str]) -> bool:
    """Caddy's auth switches: ENABLE_AUTH=false, or 8188 listed in AUTH_EXCLUDE."""
    if env.get("ENABLE_AUTH", "true").strip().lower() in ("false", "0", "no"):
        return False
    excluded = {p.strip() for p in env.get("AUTH_EXCLUDE", "").split(",")}
    return "8188" not in excluded
