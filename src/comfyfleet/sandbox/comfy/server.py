"""`SandboxComfy`: the sandbox ComfyUI as an aiohttp server on loopback, and `serve` for the CLI.

Routes are registered twice, plain and under `/api`, as ComfyUI does; `/internal` exists only
unprefixed and `/__sandbox/` (the test control API) only here. Middlewares reproduce
ComfyUI's origin check (403, empty body, when a loopback Host and the Origin disagree) and
apply the 5xx knob.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import sys
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from comfyfleet.errors import SandboxError
from comfyfleet.sandbox.comfy.core import ComfyCore
from comfyfleet.sandbox.comfy.knobs import Knobs
from comfyfleet.sandbox.comfy.logbook import ready_lines
from comfyfleet.sandbox.comfy.routes_control import add_control_routes
from comfyfleet.sandbox.comfy.routes_core import TROUBLE, add_core_routes
from comfyfleet.sandbox.comfy.routes_files import add_file_routes, internal_app
from comfyfleet.sandbox.comfy.routes_user import add_user_routes
from comfyfleet.util.resource import AsyncResource

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_DEVICE = "NVIDIA GeForce RTX 4090"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


@web.middleware
async def origin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ComfyUI's guard against browsers posting to a loopback server from another site."""
    if "Host" in request.headers and "Origin" in request.headers:
        host_domain = request.headers["Host"].lower()
        parsed = urllib.parse.urlparse(request.headers["Origin"])
        origin_domain: str | None = parsed.netloc.lower()
        host_parsed = urllib.parse.urlsplit("//" + host_domain)
        loopback = _is_loopback(host_parsed.hostname)
        host_cmp: str | None = host_domain
        if parsed.port is None:
            host_cmp = host_parsed.hostname
        if host_parsed.port is None:
            origin_domain = parsed.hostname
        if loopback and host_cmp and origin_domain and host_cmp != origin_domain:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


def _fault_middleware(knobs: Knobs) -> Any:
    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/__sandbox/"):
            status = knobs.take_failure()
            if status == 500:
                return web.Response(status=500, text=TROUBLE)
            if status is not None:
                return web.Response(status=status)
        return await handler(request)

    return faults


def build_app(core: ComfyCore, knobs: Knobs) -> web.Application:
    app = web.Application(
        client_max_size=MAX_UPLOAD_BYTES, middlewares=[_fault_middleware(knobs), origin_only]
    )
    routes = web.RouteTableDef()
    add_user_routes(routes, core)
    add_file_routes(routes, core)
    add_core_routes(routes, core)
    api = web.RouteTableDef()
    for route in routes:
        if isinstance(route, web.RouteDef):
            api.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
    app.add_routes(api)
    app.add_routes(routes)
    app.add_subapp("/internal", internal_app(core))
    for name, folder in core.packs.web_dirs.items():
        app.router.add_static(f"/extensions/{name}", folder)
    control = web.RouteTableDef()
    add_control_routes(control, knobs)
    app.add_routes(control)

    async def static_miss(request: web.Request) -> web.Response:
        # ComfyUI's catch-all static route answers a missing file this way.
        return web.Response(status=404, content_type="application/octet-stream")

    app.router.add_get("/{tail:.*}", static_miss)
    return app


class SandboxComfy(AsyncResource):
    """A simulated ComfyUI 0.3.64 on loopback; use as `async with SandboxComfy(root) as s:`.

    `log_file`: where the server log goes (default `<root>/comfyui.log`). `persisted_queue`:
    keep the queue in `<root>/user/queue.db` (see `queuestore`). `disable_custom_nodes` and
    `custom_node_whitelist`: ComfyUI's `--disable-all-custom-nodes` and
    `--whitelist-custom-nodes`. Custom node packs load at every `start` (see `packs`).
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        knobs: Knobs | None = None,
        device_name: str = DEFAULT_DEVICE,
        preview_method: str = "none",
        log_file: Path | None = None,
        persisted_queue: bool = False,
        disable_custom_nodes: bool = False,
        custom_node_whitelist: Sequence[str] = (),
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port
        self.speed = speed
        self.knobs = knobs if knobs is not None else Knobs()
        self.device_name = device_name
        self.preview_method = preview_method
        self.log_file = log_file
        self.persisted_queue = persisted_queue
        self.disable_custom_nodes = disable_custom_nodes
        self.custom_node_whitelist = tuple(custom_node_whitelist)
        self.core: ComfyCore | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listen_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle -------------------------------------------------------------------------

    async def aopen(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            raise SandboxError("this sandbox ComfyUI is already running")
        self._loop = asyncio.get_running_loop()
        self.root.mkdir(parents=True, exist_ok=True)
        core = ComfyCore(
            self.root,
            speed=self.speed,
            knobs=self.knobs,
            device_name=self.device_name,
            preview_method=self.preview_method,
            log_file=self.log_file,
        )
        self.core = core
        await core.boot(
            persisted_queue=self.persisted_queue or self.knobs.persisted_queue,
            disable_all=self.disable_custom_nodes,
            whitelist=self.custom_node_whitelist,
        )
        self._runner = web.AppRunner(
            build_app(core, self.knobs), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        try:
            await self._listen()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            core.close()
            raise SandboxError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        core.argv = ["main.py", *self._flags()]
        core.book.write(ready_lines(self.url))
        self._tasks = [
            asyncio.create_task(core.worker()),
            asyncio.create_task(core.hub.publish_loop()),
        ]
        self.knobs.subscribe(self._on_knobs)

    async def stop(self) -> None:
        self.knobs.unsubscribe(self._on_knobs)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.core is not None:
            await self.core.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None
        if self.core is not None:
            self.core.close()
            shutil.rmtree(self.core.layout.temp, ignore_errors=True)  # as ComfyUI does at exit

    def _flags(self) -> list[str]:
        """The command line /system_stats echoes."""
        flags = ["--listen", self.host, "--port", str(self.port)]
        if self.preview_method != "none":
            flags += ["--preview-method", self.preview_method]
        if self.disable_custom_nodes:
            flags.append("--disable-all-custom-nodes")
        if self.custom_node_whitelist:
            flags += ["--whitelist-custom-nodes", *self.custom_node_whitelist]
        if self.persisted_queue:
            flags.append("--persisted-queue")
        return flags

    def start_in_thread(self) -> SandboxHandle:
        """Run in a daemon thread with its own event loop; returns once the server listens."""
        return SandboxHandle(self)

    # --- listening and knobs -----------------------------------------------------------------

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        if self.port == 0:
            server = site._server
            assert server is not None and hasattr(server, "sockets")
            self.port = int(server.sockets[0].getsockname()[1])

    async def _stop_listening(self, seconds: float | None) -> None:
        await asyncio.sleep(
            0.05
        )  # let the answer to a /__sandbox/ request that asked for this go out
        async with self._listen_lock:
            if self._site is not None and self._runner is not None:
                await self._site.stop()
                self._site = None
                assert self.core is not None
                self.core.hub.abort_all()
                for transport in list(self._runner.server._connections.values()):  # type: ignore[union-attr]
                    transport.abort()
        if seconds is not None and self.core is not None:
            await self.core.clock.sleep(seconds)
            self.knobs.accept_connections()

    async def _resume_listening(self) -> None:
        async with self._listen_lock:
            if self._site is None and self._runner is not None:
                await self._listen()

    def _on_knobs(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._apply_knobs)

    def _apply_knobs(self) -> None:
        if self.core is None or self._runner is None:
            return
        core = self.core
        core.executor.knob_event.set()
        if self.knobs.persisted_queue and core.store is None:
            core.persist_queue(restore=False)
        elif not (self.knobs.persisted_queue or self.persisted_queue) and core.store is not None:
            core.forget_queue_store()
        if self.knobs.take_corrupt_queue():
            core.corrupt_queue_store()
        if self.knobs.take_drop_now():
            self.core.hub.abort_all()
        if self.knobs.refusing and self._site is not None:
            self._tasks.append(asyncio.create_task(self._stop_listening(self.knobs.refuse_seconds)))
        elif not self.knobs.refusing and self._site is None:
            self._tasks.append(asyncio.create_task(self._resume_listening()))


class SandboxHandle:
    """A `SandboxComfy` running in a background thread: `url`, `knobs`, `stop()`."""

    def __init__(self, server: SandboxComfy) -> None:
        self.server = server
        self.knobs = server.knobs
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sandbox-comfy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise SandboxError(f"sandbox ComfyUI failed to start: {self._error}") from self._error

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def root(self) -> Path:
        return self.server.root

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.server.stop()

    def stop(self) -> None:
        """Stop the server and wait for its thread to end."""
        if self._loop is not None and self._stopped is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)


async def serve(
    root: Path,
    host: str,
    port: int,
    speed: float,
    *,
    log_file: Path | None = None,
    device_name: str = DEFAULT_DEVICE,
    persisted_queue: bool = False,
    disable_custom_nodes: bool = False,
    custom_node_whitelist: Sequence[str] = (),
) -> None:
    """Run a sandbox ComfyUI until cancelled (the CLI's `comfyfleet sandbox comfy`).

    Prints ComfyUI's "To see the GUI go to: <url>" line on stderr once it listens. The other
    arguments are `SandboxComfy`'s.
    """
    server = SandboxComfy(
        root,
        host=host,
        port=port,
        speed=speed,
        device_name=device_name,
        log_file=log_file,
        persisted_queue=persisted_queue,
        disable_custom_nodes=disable_custom_nodes,
        custom_node_whitelist=custom_node_whitelist,
    )
    async with server:
        print(f"To see the GUI go to: {server.url}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
