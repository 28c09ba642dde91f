"""Self-healing tunnels: a local port forwarded to an instance's ComfyUI over SSH (asyncssh).

    tunnel = Tunnel("31337", resolve, layout.comfy_port, clock=clock, state_file=path)
    await tunnel.start()                     # local port chosen now (127.0.0.1, free)
    await tunnel.wait_up(60)
    if await wait_http_ready(tunnel.url, 120): open the browser
    ...
    await tunnel.aclose()

A supervisor task keeps the forward up: it connects (keepalive on), forwards
127.0.0.1:<local port> to 127.0.0.1:<remote port> on the instance (`forward_local_port`), and
when the connection drops (or keepalive declares it dead, or the endpoint moves) it calls
`resolve()` again — the caller re-reads the instance's SSH endpoint from Vast there — and
reconnects with backoff on the given clock. The local port never changes: during a reconnect
it refuses connections for a moment and clients retry. A changed host key, an unusable key
file, or a lookup error that is not retryable (the instance is gone) ends the tunnel (state
"closed", `failure` set): those are never retried. The state is observable through
`on_state` and a JSON state file (see `tunnel_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx

from comfyfleet.errors import (
    ComfyfleetError,
    HostKeyChanged,
    RemoteError,
    SshKeyError,
    TunnelError,
)
from comfyfleet.remote.ssh import DEFAULT_CONNECT_TIMEOUT, SshConnection, connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.remote.tunnel_state import (
    TunnelState,
    TunnelStatus,
    tunnel_state_file,
    write_state,
)
from comfyfleet.util.clock import Clock
from comfyfleet.util.resource import AsyncResource

log = logging.getLogger(__name__)
Resolve = Callable[[], Awaitable[SshTarget]]
LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnect attempts: none for the first, then initial × factor^n ≤ max."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0  # someone may be waiting at the browser: retry often, it is cheap

    def delay(self, attempt: int) -> float:
        if attempt <= 0:
            return 0.0
        return float(min(self.maximum, self.initial * self.factor ** (attempt - 1)))


def pick_free_port(exclude: Collection[int] = ()) -> int:
    """A loopback TCP port nobody listens on now (and not in `exclude`)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCAL_HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port
    raise TunnelError("no free local port found")


def _check_bindable(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOCAL_HOST, port))
        except OSError as exc:
            raise TunnelError(
                f"local port {port} is not available: {exc.strerror or exc}",
                hint="choose another port with --port, or leave it out to get a free one",
            ) from exc


class Tunnel(AsyncResource):
    """127.0.0.1:`local_port` → 127.0.0.1:`remote_port` on one instance, kept up."""

    def __init__(
        self,
        instance_ref: str,
        resolve: Resolve,
        remote_port: int,
        *,
        clock: Clock,
        local_port: int = 0,
        keepalive: float = 30.0,
        keepalive_count: int = 3,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff: Backoff = Backoff(),
        endpoint_check: float | None = None,
        state_file: Path | None = None,
        on_state: Callable[[TunnelState], None] | None = None,
    ) -> None:
        """`endpoint_check`: also call `resolve()` every so many seconds while up, and move
        when the endpoint changed (None: only when the connection drops)."""
        if endpoint_check is not None and endpoint_check <= 0:
            raise ValueError("endpoint_check must be a positive number of seconds")
        self.instance_ref = instance_ref
        self.remote_port = remote_port
        self.local_port = local_port
        self.failure: ComfyfleetError | None = None
        self._resolve = resolve
        self._clock = clock
        self._keepalive = (keepalive, keepalive_count)
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._endpoint_check = endpoint_check
        self._state_file = state_file
        self._on_state = on_state
        self._closing = asyncio.Event()
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ever_up = False
        self._state = TunnelState(instance_ref, "connecting", clock.now(), local_port, remote_port)

    # --- public --------------------------------------------------------------------------

    @property
    def state(self) -> TunnelState:
        return self._state

    @property
    def url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.local_port}"

    async def start(self) -> None:
        """Choose (or check) the local port and start the supervisor; returns at once."""
        if self._task is not None:
            return
        if self.local_port:
            _check_bindable(self.local_port)
        else:
            self.local_port = pick_free_port()
        self._set("connecting")
        self._task = asyncio.create_task(self._supervise(), name=f"tunnel-{self.instance_ref}")

    async def wait_up(self, timeout: float) -> None:
        """Until the forward is up; TunnelError on timeout, the failure if the tunnel ended."""
        if self._task is None:
            raise TunnelError("the tunnel was not started")
        up = asyncio.ensure_future(self._up.wait())
        try:
            await asyncio.wait(
                {up, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            up.cancel()
        if self._up.is_set():
            return
        if self._task.done():
            raise self.failure or TunnelError(f"tunnel to instance {self.instance_ref} closed")
        error = f": {self._state.last_error}" if self._state.last_error else ""
        raise TunnelError(
            f"tunnel to instance {self.instance_ref} not up after {timeout:g} s{error}",
            hint="the instance may still be starting; its SSH endpoint may have changed",
        )

    async def aclose(self) -> None:
        """Stop forwarding, close the connection, remove the state file."""
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set("closed", self._state.last_error)
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)

    async def aopen(self) -> None:
        await self.start()

    # --- supervisor ----------------------------------------------------------------------

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            error = await self._one_session()
            if error is None or self.failure is not None:
                break
            if self._state.status == "up":  # it was up until now: a drop, retry at once
                attempt = 0
                self._state = dataclasses.replace(
                    self._state, reconnects=self._state.reconnects + 1
                )
            self._set("reconnecting" if self._ever_up else "connecting", error)
            if await self._clock.sleep(self._backoff.delay(attempt), self._closing):
                break
            attempt += 1
        self._set("closed", self._state.last_error if error is None else error)

    async def _one_session(self) -> str | None:
        """Connect, forward, hold until it breaks; the reason it broke (None: we closed)."""
        try:
            target = await self._resolve()
            self._state = dataclasses.replace(
                self._state, ssh_host=target.host, ssh_port=target.port
            )
            conn = await connect(
                target,
                clock=self._clock,
                keepalive=self._keepalive[0],
                keepalive_count=self._keepalive[1],
                connect_timeout=self._connect_timeout,
            )
        except (HostKeyChanged, SshKeyError) as exc:  # retrying cannot fix these
            self.failure = exc
            return str(exc.message)
        except RemoteError as exc:
            return exc.message
        except ComfyfleetError as exc:  # from resolve(): the caller's lookup failed
            if not exc.retryable:
                self.failure = exc
            return exc.message
        try:
            listener = await conn.asyncssh_connection.forward_local_port(
                LOCAL_HOST, self.local_port, "127.0.0.1", self.remote_port
            )
        except (OSError, asyncssh.Error) as exc:
            await conn.aclose()
            return f"cannot listen on local port {self.local_port}: {exc}"
        try:
            self._ever_up = True
            self._set("up")
            return await self._hold(conn, target)
        finally:
            self._up.clear()
            listener.close()
            with contextlib.suppress(OSError, asyncssh.Error):
                await listener.wait_closed()
            await conn.aclose()

    async def _hold(self, conn: SshConnection, target: SshTarget) -> str | None:
        waiters: dict[asyncio.Future[object], str | None] = {
            asyncio.ensure_future(conn.wait_closed()): "connection lost",
            asyncio.ensure_future(self._closing.wait()): None,
        }
        if self._endpoint_check:
            waiters[asyncio.ensure_future(self._watch_endpoint(target))] = "endpoint changed"
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waiters:
                fut.cancel()
        if self._closing.is_set():
            return None
        first = next(iter(done))
        if waiters[first] == "endpoint changed" and not first.cancelled():
            return f"endpoint changed to {first.result()}"
        return "connection lost"

    async def _watch_endpoint(self, current: SshTarget) -> str:
        assert self._endpoint_check is not None
        while not await self._clock.sleep(self._endpoint_check, self._closing):
            with contextlib.suppress(ComfyfleetError):
                new = await self._resolve()
                if (new.host, new.port) != (current.host, current.port):
                    return f"{new.host}:{new.port}"
        return ""  # closing

    # --- state ---------------------------------------------------------------------------

    def _set(self, status: TunnelStatus, error: str | None = None) -> None:
        old = self._state
        since = old.since if old.status == status else self._clock.now()
        self._state = dataclasses.replace(
            old, status=status, since=since, last_error=error, local_port=self.local_port
        )
        if status == "up":
            self._up.set()
        if self._state == old:
            return
        if self._state_file is not None and status != "closed":
            try:
                write_state(self._state_file, self._state)
            except OSError as exc:
                log.warning("cannot write tunnel state file %s: %s", self._state_file, exc)
        if self._on_state is not None:
            self._on_state(self._state)


class TunnelGroup(AsyncResource):
    """Tunnels to several instances at once, on distinct free local ports.

    The keyword options are those of `Tunnel`, for every tunnel of the group.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        state_dir: Path | None = None,
        on_state: Callable[[TunnelState], None] | None = None,
        keepalive: float = 30.0,
        keepalive_count: int = 3,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff: Backoff = Backoff(),
        endpoint_check: float | None = None,
    ) -> None:
        self.tunnels: list[Tunnel] = []
        self._clock = clock
        self._state_dir = state_dir
        self._on_state = on_state
        self._keepalive = (keepalive, keepalive_count)
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._endpoint_check = endpoint_check

    async def open(
        self, instance_ref: str, resolve: Resolve, remote_port: int, *, local_port: int = 0
    ) -> Tunnel:
        used = {t.local_port for t in self.tunnels}
        if local_port in used:
            raise TunnelError(f"local port {local_port} is already used by another tunnel")
        tunnel = Tunnel(
            instance_ref,
            resolve,
            remote_port,
            clock=self._clock,
            local_port=local_port or pick_free_port(exclude=used),
            state_file=tunnel_state_file(self._state_dir, instance_ref)
            if self._state_dir
            else None,
            on_state=self._on_state,
            keepalive=self._keepalive[0],
            keepalive_count=self._keepalive[1],
            connect_timeout=self._connect_timeout,
            backoff=self._backoff,
            endpoint_check=self._endpoint_check,
        )
        await tunnel.start()
        self.tunnels.append(tunnel)
        return tunnel

    def states(self) -> list[TunnelState]:
        return [t.state for t in self.tunnels]

    async def wait_all_up(self, timeout: float) -> None:
        await asyncio.gather(*(t.wait_up(timeout) for t in self.tunnels))

    async def aclose(self) -> None:
        await asyncio.gather(*(t.aclose() for t in self.tunnels))


async def wait_http_ready(
    url: str,
    timeout: float,
    *,
    clock: Clock | None = None,
    path: str = "/system_stats",
    interval: float = 0.5,
) -> bool:
    """Poll GET `url + path` until it answers 200 (ComfyUI is up behind the tunnel).

    True once it answers, False after `timeout` seconds (of `clock`, real time by default).
    Proxies from the environment are ignored: the URL is a local tunnel.
    """
    loop = asyncio.get_running_loop()
    now = clock.monotonic if clock is not None else loop.time
    deadline = now() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0)) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url.rstrip("/") + path)).status_code == 200:
                    return True
            if now() >= deadline:
                return False
            if clock is not None:
                await clock.sleep(interval)
            else:
                await asyncio.sleep(interval)
