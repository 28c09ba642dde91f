"""The WebSocket event stream of one ComfyUI client: one socket, many readers, reconnects.

ComfyUI keeps one socket per clientId, and a second connection with the same id silently
replaces the first; so a client owns a single `EventHub` connection and every `EventStream`
is a reader of it with its own buffer (events arrive in every open stream from the moment
it was opened). The hub sends the feature_flags handshake first (previews then carry their
prompt and node), and when the socket drops it reconnects with the same clientId and a
backoff, pushing `Reconnected` to every stream; after `ws_reconnect_attempts` consecutive
failures each stream raises ComfyUnreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from comfyfleet.comfy.http import AUTH_HINT, UNREACHABLE_HINT, redact_url
from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyAuthError,
    ComfyfleetError,
    ComfyProtocolError,
    ComfyUnreachable,
)
from comfyfleet.models.events import Event, Reconnected, parse_event
from comfyfleet.util.clock import Clock
from comfyfleet.util.resource import AsyncResource

log = logging.getLogger(__name__)

#: Events kept per unread stream; beyond it the oldest go (a reader that never reads).
STREAM_BUFFER = 10_000
#: Largest frame accepted: previews of big images (and full images from save-to-socket nodes).
MAX_FRAME = 256 * 1024 * 1024
HANDSHAKE = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnect `attempt` (1-based): 0.25, 0.5, 1, 2, 4, 5, 5…"""
    return float(min(5.0, 0.25 * 2 ** (attempt - 1)))


def ws_url(base_url: str, client_id: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = f"clientId={quote(client_id, safe='')}"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", query, ""))


class EventHub:
    """The single socket of a client, shared by its streams (first opens, last closes)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        *,
        token: str | None,
        settings: ComfySettings,
        clock: Clock,
    ) -> None:
        self.client_id = client_id
        self._url = ws_url(base_url, client_id)
        self._display = redact_url(base_url) + "/ws"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._settings = settings
        self._clock = clock
        self._streams: set[EventStream] = set()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def stream(self) -> EventStream:
        return EventStream(self)

    async def _attach(self, stream: EventStream) -> None:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._reader is None or self._reader.done():
                self._ws = await self._open()
                self._reader = asyncio.create_task(self._read(), name=f"comfy-ws-{self.client_id}")
            self._streams.add(stream)

    async def _detach(self, stream: EventStream) -> None:
        self._streams.discard(stream)
        if not self._streams:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the socket and end every stream."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self._close_socket()
        for stream in list(self._streams):
            stream._end(None)
        self._streams.clear()

    async def _close_socket(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _open(self) -> ClientConnection:
        """Connect and send the handshake; failures become comfyfleet errors."""
        try:
            ws = await connect(
                self._url,
                additional_headers=self._headers,
                open_timeout=self._settings.connect_timeout,
                max_size=MAX_FRAME,
                max_queue=None,
            )
            await ws.send(HANDSHAKE)
        except websockets.InvalidStatus as exc:
            code = exc.response.status_code
            if code in (401, 403):
                raise ComfyAuthError(
                    f"{self._display}: HTTP {code}, credentials refused", hint=AUTH_HINT
                ) from exc
            if code in (502, 503, 504):
                raise self._unreachable(f"HTTP {code} from a proxy") from exc
            raise ComfyProtocolError(
                f"{self._display}: HTTP {code} instead of a WebSocket upgrade",
                hint="is this a ComfyUI server (and does the proxy pass WebSockets)?",
            ) from exc
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            raise self._unreachable(_describe(exc)) from exc
        log.debug("event stream connected to %s", self._display)
        return ws

    def _unreachable(self, why: str) -> ComfyUnreachable:
        return ComfyUnreachable(
            f"cannot reach ComfyUI's event stream at {self._display} ({why})",
            hint=UNREACHABLE_HINT,
        )

    async def _read(self) -> None:
        """Pump frames to the streams; on a drop, reconnect or end every stream with an error."""
        while True:
            ws = self._ws
            if ws is None:
                return
            try:
                async for frame in ws:
                    self._dispatch(frame)
            except websockets.ConnectionClosed:
                pass
            except (OSError, websockets.WebSocketException) as exc:
                log.info("event stream broke: %s", _describe(exc))
            log.info("event stream to %s dropped; reconnecting", self._display)
            self._ws = None
            for stream in list(self._streams):
                stream._poke()  # waiters switch to polling now, not at their next timeout
            with contextlib.suppress(Exception):
                await ws.close()
            error = await self._reconnect()
            if error is not None:
                for stream in list(self._streams):
                    stream._end(error)
                return

    async def _reconnect(self) -> ComfyfleetError | None:
        attempts = self._settings.ws_reconnect_attempts
        last: ComfyfleetError = self._unreachable("the socket dropped")
        for attempt in range(1, attempts + 1):
            await self._clock.sleep(backoff(attempt))
            try:
                self._ws = await self._open()
            except ComfyAuthError as exc:
                return exc
            except ComfyfleetError as exc:
                last = exc
                log.info("reconnect %d/%d failed: %s", attempt, attempts, exc.message)
                continue
            for stream in list(self._streams):
                stream._push(Reconnected(attempt))
            return None
        return ComfyUnreachable(
            f"{last.message}; gave up after {attempts} reconnect attempts", hint=last.hint
        )

    def _dispatch(self, frame: str | bytes) -> None:
        try:
            event = parse_event(frame)
        except ComfyProtocolError as exc:
            # One unreadable frame must not end the stream: history still has the result.
            log.warning("ignoring an unreadable event frame: %s", exc.message)
            return
        for stream in list(self._streams):
            stream._push(event)


class EventStream(AsyncResource):
    """Typed events of one client's socket, from the moment the stream was opened.

    Use as `async with client.events() as stream: async for event in stream: ...`.
    Iteration ends when the stream is closed; it raises ComfyUnreachable when the socket
    could not be reopened. `next_event(timeout)` waits at most `timeout` seconds of the
    client's clock and returns None when nothing came.
    """

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._buffer: deque[Event] = deque(maxlen=STREAM_BUFFER)
        self._ready = asyncio.Event()
        self._error: ComfyfleetError | None = None
        self._open = False
        self._ended = False

    @property
    def client_id(self) -> str:
        return self._hub.client_id

    @property
    def connected(self) -> bool:
        """True while the socket is up (False while reconnecting, after failure or close)."""
        return self._open and not self._ended and self._hub.connected

    async def aopen(self) -> None:
        await self.open()

    async def open(self) -> None:
        if self._open:
            return
        await self._hub._attach(self)
        self._open = True

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._end(None)
            await self._hub._detach(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await self.next_event(None)
            if event is not None:
                return event
            if self._ended and not self._buffer:
                raise StopAsyncIteration

    async def next_event(self, timeout: float | None) -> Event | None:
        """The next buffered event, waiting up to `timeout` (None: until one comes or the end)."""
        if not self._buffer and not self._ended:
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
            elif timeout > 0:
                await self._hub._clock.sleep(timeout, wake=self._ready)
        if self._buffer:
            return self._buffer.popleft()
        if self._error is not None:
            raise self._error
        return None

    @property
    def ended(self) -> bool:
        """True once the stream was closed or its socket was given up."""
        return self._ended and not self._buffer

    def _push(self, event: Event) -> None:
        if not self._ended:
            self._buffer.append(event)
            self._ready.set()

    def _poke(self) -> None:
        """Wake a waiting `next_event` with nothing (the socket's state changed)."""
        self._ready.set()

    def _end(self, error: ComfyfleetError | None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._ready.set()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
