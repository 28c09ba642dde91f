"""The simulated Vast cloud as an aiohttp server on loopback.

    async with SandboxVast(speed=200) as cloud:       # in-memory, no host processes
        cloud.url, cloud.api_key, cloud.knobs
    handle = SandboxVast(state_dir, hosts=True).start_in_thread()

Every API request first moves the world to the clock's now (deadlines, billing), so answers
are consistent with the simulated time; a background tick does the same every `tick` real
seconds. Requests pass, in order: the 5xx-storm knob, authentication (Bearer header or
`?api_key=`, else 401 "Invalid user key"), the per-endpoint rate limit, then the handler.

Time across restarts: the simulated clock continues from where it stopped (the saved
simulated time), so a sandbox that was down bills nothing for the downtime and instances
resume mid-phase. Running instances get their hosts started again (possibly on new ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from comfyfleet import __version__
from comfyfleet.sandbox.vast import (
    api_account,
    api_control,
    api_instances,
    api_offers,
    faults,
    pids,
    timeline,
)
from comfyfleet.sandbox.vast.context import CTX, Context
from comfyfleet.sandbox.vast.errors import ApiError
from comfyfleet.sandbox.vast.hosts import (
    HOST_MODULE,
    HostLauncher,
    HostManager,
    ProcessHostLauncher,
)
from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.store import Store
from comfyfleet.sandbox.vast.wire import add_routes, error_response, text_response
from comfyfleet.sandbox.vast.world import World
from comfyfleet.util.clock import Clock, ScaledClock
from comfyfleet.util.resource import AsyncResource

log = logging.getLogger(__name__)

SAVE_EVERY = 1.0  # real seconds between saves when only billing moved
CHECK_HOSTS_EVERY = 0.5  # real seconds between host liveness checks
_GATEWAY_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def _gateway_page(status: int) -> web.Response:
    title = f"{status} {_GATEWAY_TEXT.get(status, 'Gateway Error')}"
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
    return text_response(page, status, "text/html")


class SandboxVast(AsyncResource):
    """The simulated Vast cloud (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        speed: float = 1.0,
        seed: int = 0,
        credit: float = 50.0,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        hosts: bool = False,
        host_launcher: HostLauncher | None = None,
        clock: Clock | None = None,
        knobs: VastKnobs | None = None,
        tick: float = 0.05,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.state_dir = state_dir
        self.speed = speed
        self.seed = seed
        self.credit = credit
        self._api_key = api_key
        self.host = host
        self.port = port
        self.launcher = host_launcher or (ProcessHostLauncher() if hosts else None)
        self._clock = clock
        self.knobs = knobs or VastKnobs()
        self.tick = tick
        self.store = Store(state_dir / "cloud.json") if state_dir else None
        self.url = ""
        self._world: World | None = None
        self.hosts: HostManager | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._closed: asyncio.Event | None = None
        self._tmp: Path | None = None
        self._saved_at = 0.0
        self._checked_at = 0.0
        self._last_call: dict[tuple[str, str], float] = {}
        self._endpoints: dict[Callable[[web.Request], Awaitable[web.StreamResponse]], str] = {}

    # --- accessors --------------------------------------------------------------------------

    @property
    def world(self) -> World:
        if self._world is None:
            raise RuntimeError("the sandbox cloud is not started")
        return self._world

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            raise RuntimeError("the sandbox cloud is not started")
        return self._clock

    @property
    def api_key(self) -> str:
        return self.world.account.api_key

    @property
    def api_url(self) -> str:
        """The base URL clients use (`VAST_URL` for the official CLI)."""
        return self.url

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._closed = asyncio.Event()
        data = self.store.load() if self.store else None
        if self._clock is None:
            self._clock = ScaledClock(self.speed, start=None if data is None else data["sim_now"])
        instant = self.launcher is None
        if self.launcher is not None:
            instances_dir = (
                self.state_dir / "instances"
                if self.state_dir
                else Path(tempfile.mkdtemp(prefix="comfyfleet-vast-"))
            )
            self._tmp = None if self.state_dir else instances_dir
            self.hosts = HostManager(lambda: self.world, self.launcher, instances_dir, self.speed)
            self.hosts.on_change = self._settle
        if data is None:
            self._world = World(
                self.knobs,
                seed=self.seed,
                now=self._clock.now(),
                credit=self.credit,
                api_key=self._api_key,
                instant_hosts=instant,
            )
        else:
            self._world = World.from_json(data, self.knobs, instant_hosts=instant)
            if self._api_key:
                self._world.account.api_key = self._api_key
            self._kill_leftover_hosts()
            self._world.resume()
        app = self._build_app()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        bound = self._runner.addresses[0][1] if self._runner.addresses else self.port
        self.url = f"http://{self.host}:{bound}"
        app[CTX].base_url = self.url
        self._settle(force_save=True)
        self._ticker = asyncio.create_task(self._tick_loop())

    def _kill_leftover_hosts(self) -> None:
        """Hosts of a previous run that outlived it (it was killed) must not hold the roots."""
        for inst in self.world.instances.values():
            if inst.host_pid and self.hosts is not None:
                root = str(self.hosts.root(inst.id).resolve())
                pids.terminate(inst.host_pid, HOST_MODULE, root, timeout=5.0)
            inst.host_pid = None

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._world is not None:
            self._advance()
            if self.hosts is not None:
                await self.hosts.close()
                for inst in self.world.instances.values():
                    inst.host_pid = None  # they start again (new pids) when the cloud does
            self._persist(force=True)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def request_shutdown(self) -> None:
        """Ask a running sandbox to stop (what POST /__sandbox/shutdown does)."""
        if self._closed is not None:
            self._closed.set()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed.wait()

    async def aopen(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.stop()

    def start_in_thread(self) -> VastThread:
        return VastThread(self)

    # --- the app ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024)
        app[CTX] = Context(
            world=self.world,
            knobs=self.knobs,
            clock=self.clock,
            started_at=time.time(),
            version=__version__,
            hosts="process" if self.launcher is not None else "none",
            host_root=self._host_root,
            changed=self._advance,
            shutdown=self.request_shutdown,
        )
        routes = api_offers.ROUTES + api_instances.ROUTES + api_account.ROUTES
        self._endpoints = add_routes(app, routes)
        api_control.add_control_routes(app)
        return app

    def _host_root(self, instance_id: int) -> Path | None:
        return self.hosts.root(instance_id) if self.hosts is not None else None

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        path = request.path
        api = path.startswith("/api/")
        control = path.startswith("/__sandbox/")
        try:
            if api:
                status = self.knobs.take_failure()
                if status is not None:
                    return _gateway_page(status)
            if (api and path not in api_offers.PUBLIC_API_PATHS) or (
                control and not path.startswith(api_control.PUBLIC_PATHS)
            ):
                self._authenticate(request)
            self._advance()
            if api:
                limited = self._rate_limited(request)
                if limited is not None:
                    return limited
            response = await handler(request)
            route_handler = request.match_info.route.handler
            hold = self.knobs.hold_for(self._endpoints.get(route_handler)) if api else 0.0
            if hold:
                await asyncio.sleep(hold)
            return response
        except ApiError as exc:
            return error_response(exc)
        except web.HTTPException as exc:
            if not (api or control) or exc.status < 400:
                raise
            code = "not_found" if exc.status == 404 else "invalid_request"
            return error_response(ApiError(exc.status, code, f"{exc.reason}: {path}"))
        except Exception:  # answer like a server, keep serving
            log.exception("sandbox Vast API error on %s %s", request.method, path)
            return error_response(ApiError(500, "server_error", "Internal server error"))

    def _authenticate(self, request: web.Request) -> None:
        expected = self.world.account.api_key
        header = request.headers.get("Authorization", "")
        offered = [header[7:].strip()] if header[:7].lower() == "bearer " else []
        offered.append(request.query.get("api_key", ""))
        if not any(k and hmac.compare_digest(k, expected) for k in offered):
            raise ApiError(401, "auth_error", "Invalid user key")

    def _rate_limited(self, request: web.Request) -> web.Response | None:
        endpoint = self._endpoints.get(request.match_info.route.handler)
        interval = self.knobs.rate_limits.get(endpoint) if endpoint else None
        if endpoint is None or not interval:
            return None
        who = request.headers.get("Authorization") or request.query.get("api_key") or ""
        key = (who, endpoint)
        now = self.clock.now()
        last = self._last_call.get(key)
        if last is not None and now - last < interval:
            return text_response(f"API requests too frequent endpoint threshold={interval:g}", 429)
        self._last_call[key] = now
        return None

    # --- time and side effects --------------------------------------------------------------

    def _advance(self) -> None:
        # Knob actions take effect when they were asked for: before time moves on.
        actions, credit = self.knobs.drain()
        if actions or credit is not None:
            faults.apply_actions(self.world, actions, credit)
        timeline.advance(self.world, self.clock.now())
        self._settle()

    def _settle(self, force_save: bool = False) -> None:
        """After a change: hand host work to the manager, rewrite keys, save if due."""
        world = self.world
        effects = world.take_effects()
        if self.hosts is not None:
            if world.keys_changed:
                self.hosts.sync_keys()
            self.hosts.dispatch(effects)
        world.keys_changed = False
        self._persist(force=force_save)

    def _persist(self, force: bool = False) -> None:
        if self.store is None:
            self.world.changed = False
            return
        now = time.monotonic()
        if force or self.world.changed or now - self._saved_at >= SAVE_EVERY:
            self.store.save(self.world.to_json())
            self.world.changed = False
            self._saved_at = now

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                self._advance()
                now = time.monotonic()
                if self.hosts is not None and now - self._checked_at >= CHECK_HOSTS_EVERY:
                    self._checked_at = now
                    self.hosts.check_alive()
                    self._settle()
            except Exception:  # one bad tick must not stop the clock
                log.exception("sandbox Vast tick failed")


class VastThread:
    """A SandboxVast running in a background thread (for code that is not async)."""

    def __init__(self, cloud: SandboxVast, timeout: float = 60.0) -> None:
        self.cloud = cloud
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sandbox-vast", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the sandbox cloud did not start in time")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.cloud.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_until_complete(self.cloud.wait_closed())
        finally:
            self._loop.run_until_complete(self.cloud.stop())
            self._loop.close()

    @property
    def url(self) -> str:
        return self.cloud.url

    @property
    def api_key(self) -> str:
        return self.cloud.api_key

    @property
    def knobs(self) -> VastKnobs:
        return self.cloud.knobs

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.cloud.request_shutdown)
            self._thread.join(timeout)
