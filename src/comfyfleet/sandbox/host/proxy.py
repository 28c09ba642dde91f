"""The image's Caddy in front of ComfyUI: check the token, then forward HTTP and WebSocket.

Accepted credentials, as on Vast's image: `Authorization: Bearer <token>`, `?token=<token>`
(which also sets the `<VAST_CONTAINERLABEL>_auth_token` cookie, like the console's Open
button), that cookie, and HTTP basic auth with user `vastai` (or `$WEB_USERNAME`). Anything
else gets 401. Bodies stream both ways (uploads and downloads are not buffered); while
ComfyUI is not listening (provisioning, restarting) the answer is 502, as from Caddy.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
from collections.abc import Iterable

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_WS_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)


class TokenProxy:
    """A reverse proxy on a loopback port to ComfyUI's internal port, behind token auth."""

    def __init__(
        self,
        upstream_port: int,
        tokens: Iterable[str],
        *,
        cookie_name: str,
        username: str = "vastai",
        auth: bool = True,
    ) -> None:
        self.upstream_port = upstream_port
        self.tokens = [t for t in tokens if t]
        self.cookie_name = cookie_name
        self.username = username
        self.auth = auth
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, port: int = 0) -> int:
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and hasattr(server, "sockets")
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- auth --------------------------------------------------------------------------------

    def _is_token(self, value: str | None) -> bool:
        return bool(value) and any(hmac.compare_digest(str(value), t) for t in self.tokens)

    def credentials(self, request: web.Request) -> str | None:
        """How the request proved itself ('bearer', 'query', 'cookie', 'basic'), or None."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self._is_token(value.strip()):
            return "bearer"
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            if user == self.username and self._is_token(password):
                return "basic"
        if self._is_token(request.query.get("token")):
            return "query"
        if self._is_token(request.cookies.get(self.cookie_name)):
            return "cookie"
        return None

    # --- forwarding --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        how = self.credentials(request) if self.auth else "open"
        if how is None:
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Basic realm="restricted"'}
            )
        url = URL(f"http://127.0.0.1:{self.upstream_port}{_strip_token(request)}", encoded=True)
        headers = _forward_headers(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, url, headers)
        assert self._session is not None
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=headers,
                allow_redirects=False,
                data=request.content if request.body_exists else None,
            )
        except (TimeoutError, aiohttp.ClientConnectionError):
            return web.Response(status=502)
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            if how == "query":
                response.set_cookie(
                    self.cookie_name,
                    request.query["token"],
                    path="/",
                    httponly=True,
                    samesite="Lax",
                )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(
        self, request: web.Request, url: URL, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        assert self._session is not None
        for key in list(headers):
            if key.lower() in _WS_HANDSHAKE:
                del headers[key]
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        try:
            upstream = await self._session.ws_connect(
                url, headers=headers, protocols=protocols, max_msg_size=0, autoping=True
            )
        except (TimeoutError, aiohttp.ClientError):
            return web.Response(status=502)
        client = web.WebSocketResponse(protocols=protocols, max_msg_size=0, autoping=True)
        await client.prepare(request)

        async def pump(
            source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
            sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
        ) -> None:
            async for msg in source:
                if msg.type == WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
            code = source.close_code or 1000
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sink.close(code=code)

        async with upstream:
            tasks = [
                asyncio.create_task(pump(upstream, client)),
                asyncio.create_task(pump(client, upstream)),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                    await task
        return client


def _strip_token(request: web.Request) -> str:
    """The path and query to send upstream: the token stays at the proxy."""
    raw = request.raw_path
    if "token=" not in raw:
        return raw
    path, _, query = raw.partition("?")
    kept = [part for part in query.split("&") if part.split("=", 1)[0] != "token"]
    return path + ("?" + "&".join(kept) if kept else "")


def _forward_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        if key.lower() not in HOP_BY_HOP:
            headers.add(key, value)
    peer = request.remote or "127.0.0.1"
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers
