"""The host's control endpoint (HTTP on loopback): what the shims and the knobs talk to.

    GET  /status                       endpoints, ComfyUI's state, provisioning, SSH state
    GET  /gpu                          GPU processes and whether ComfyUI is busy (nvidia-smi)
    POST /gpu/processes {"pid", "name", "used_mib"}
                                       another process holds GPU memory (listed while it runs)
    GET|POST /disk  {"leave_free": B}  df shows at most B bytes free (null: the machine's own)
    GET  /programs                     supervisor status of every program
    POST /programs/{name}/{action}     start | stop | restart (supervisorctl); waits like it
    POST /ssh/drop                     cut every SSH connection now
    POST /ssh/refuse   {"seconds": S}  refuse new SSH connections for S simulated seconds
    POST /ssh/move                     restart SSH on a new port ("endpoint changed")
    POST /ssh/rotate-host-key          new host key, same port

It is test and shim machinery, not part of the simulated image: it listens on 127.0.0.1 and
its port is in the endpoints file only.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from comfyfleet.sandbox.host.supervisor import ProgramStatus
from comfyfleet.util.processes import pid_alive

if TYPE_CHECKING:
    from comfyfleet.sandbox.host.instance import InstanceHost

IDLE_MIB = 1230  # ComfyUI's CUDA context and resident weights while idle
BUSY_MIB = 7850  # while a prompt runs


class ControlServer:
    def __init__(self, host: InstanceHost) -> None:
        self.host = host
        self.port = 0
        self._tenants: list[dict[str, Any]] = []  # other GPU processes (a stray training job)
        self._leave_free: int | None = None  # bytes df shows free (None: the machine's own)
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/status", self._status)
        app.router.add_get("/gpu", self._gpu)
        app.router.add_post("/gpu/processes", self._gpu_tenant)
        app.router.add_get("/disk", self._disk)
        app.router.add_post("/disk", self._disk)
        app.router.add_get("/programs", self._programs)
        app.router.add_post("/programs/{name}/{action}", self._program_action)
        app.router.add_post("/ssh/drop", self._ssh_drop)
        app.router.add_post("/ssh/refuse", self._ssh_refuse)
        app.router.add_post("/ssh/move", self._ssh_move)
        app.router.add_post("/ssh/rotate-host-key", self._ssh_rotate)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and hasattr(server, "sockets")
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers ----------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.host.status())

    async def _gpu(self, request: web.Request) -> web.Response:
        program = self.host.program
        pid = program.pid if program is not None and program.state == "RUNNING" else None
        busy = pid is not None and await self._comfy_busy()
        procs: list[dict[str, Any]] = []
        if pid is not None:
            procs.append(
                {
                    "gpu": 0,
                    "pid": pid,
                    "name": str(self.host.layout.venv_python),
                    "used_mib": BUSY_MIB if busy else IDLE_MIB,
                }
            )
        self._tenants = [t for t in self._tenants if pid_alive(int(t["pid"]))]
        procs += [dict(t) for t in self._tenants]
        return web.json_response({"processes": procs, "busy": busy})

    async def _disk(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            value = (await request.json()).get("leave_free")
            self._leave_free = None if value is None else int(value)
        return web.json_response({"leave_free": self._leave_free})

    async def _gpu_tenant(self, request: web.Request) -> web.Response:
        body = await request.json()
        tenant = {
            "gpu": 0,
            "pid": int(body["pid"]),
            "name": str(body["name"]),
            "used_mib": int(body["used_mib"]),
        }
        self._tenants.append(tenant)
        return web.json_response(tenant)

    async def _comfy_busy(self) -> bool:
        url = f"http://127.0.0.1:{self.host.comfy_port}/queue"
        try:
            timeout = aiohttp.ClientTimeout(total=1)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                data = await resp.json()
            return bool(data.get("queue_running"))
        except (TimeoutError, aiohttp.ClientError, ValueError, AttributeError):
            return False

    async def _programs(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(s) | {"line": s.line()} for s in self.host.programs()])

    async def _program_action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        program = self.host.program
        if name != "comfyui" or program is None:
            return web.json_response({"error": "no such process"}, status=404)
        if action not in ("start", "stop", "restart"):
            return web.json_response({"error": f"unknown action {action}"}, status=400)
        result: dict[str, Any] = {}
        if action in ("stop", "restart"):
            result["stopped"] = await program.stop()
        if action in ("start", "restart"):
            result["started"] = program.start()
            status: ProgramStatus = await program.wait_settled(60.0)
            result["state"] = status.state
        result["status"] = asdict(program.status())
        return web.json_response(result)

    async def _ssh_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": self.host.ssh.drop_all()})

    async def _ssh_refuse(self, request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            seconds = float(body.get("seconds", 30.0))
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"error": 'expected {"seconds": <number>}'}, status=400)
        await self.host.ssh.refuse(seconds)
        return web.json_response({"refusing_seconds": seconds, "port": self.host.ssh.port})

    async def _ssh_move(self, request: web.Request) -> web.Response:
        return web.json_response({"ssh_port": await self.host.ssh.move()})

    async def _ssh_rotate(self, request: web.Request) -> web.Response:
        return web.json_response({"fingerprint": await self.host.ssh.rotate_host_key()})
