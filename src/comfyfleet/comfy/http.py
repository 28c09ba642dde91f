"""HTTP transport to one ComfyUI server: auth, timeouts, retries and error mapping.

Every httpx exception and unexpected status ends here as a `comfyfleet.errors` type:
transport failures -> ComfyUnreachable, 401/403 -> ComfyAuthError, 404 -> ComfyNotFound,
other 4xx -> ComfyRequestRejected, 502/503/504 -> ComfyUnreachable, other 5xx and bodies
that are not what ComfyUI sends -> ComfyProtocolError. Idempotent requests (GET) are
retried on transport errors and 502/503/504 with a short backoff through the Clock; other
methods are never retried blindly. The bearer token travels only in the Authorization
header: messages and logs name the server by its redacted URL.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyAuthError,
    ComfyNotFound,
    ComfyProtocolError,
    ComfyRequestRejected,
    ComfyUnreachable,
    UsageError,
)
from comfyfleet.util.clock import Clock

log = logging.getLogger(__name__)

#: Delays before the retries of an idempotent request (so at most len + 1 attempts).
RETRY_DELAYS = (0.25, 0.75, 1.5)
RETRY_STATUSES = frozenset({502, 503, 504})
UNREACHABLE_HINT = (
    "check that ComfyUI is running there and that the SSH tunnel or proxy in front of it is up"
)
AUTH_HINT = (
    "the server or its proxy wants a valid token: pass --token or set COMFYFLEET_COMFY__TOKEN "
    "(for a Vast instance, the token of its ComfyUI proxy)"
)
_CHUNK = 1 << 16


def normalize_base_url(base_url: str) -> str:
    """`http(s)://host[:port][/prefix]`, no trailing slash, query or fragment.

    Anything else is a UsageError. Credentials travel as `token`, never in the URL.
    """
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"not a ComfyUI URL: {redact_url(base_url)!r}",
            hint="give the server as http://host:port (or https://…)",
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def path_segment(value: str) -> str:
    """One URL path segment: every reserved character, `/` included, percent-encoded."""
    return quote(value, safe="")


def excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class Fetched:
    """What `ComfyHttp.download` wrote."""

    size: int
    sha256: str
    content_type: str | None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms; one context serves every client of the process.
    return ssl.create_default_context()


class ComfyHttp:
    """An httpx client bound to one ComfyUI server."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        settings: ComfySettings,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.display_url = redact_url(self.base_url)
        self._clock = clock
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            verify=_ssl_context(),
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
        forbidden_is_auth: bool = True,
        retry: bool | None = None,
    ) -> httpx.Response:
        """Send one request; a status in `accept` is returned instead of raised.

        `retry` defaults to True for GET. `forbidden_is_auth=False` is for routes that answer
        403 themselves for a refused path (/view, /userdata), so that 403 is not a token issue.
        """
        retry = method == "GET" if retry is None else retry
        what = f"{method} /{path.split('?', 1)[0]}"
        kwargs: dict[str, Any] = {"params": params, "content": content, "files": files}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        for attempt in range(len(RETRY_DELAYS) + 1):
            last = not retry or attempt == len(RETRY_DELAYS)
            log.debug("%s %s%s", method, self.display_url, "/" + path)
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                error = self.unreachable(exc, what)
                if last or not _retryable_transport(exc):
                    raise error from exc
                log.info("%s (retrying)", error.message)
                await self._clock.sleep(RETRY_DELAYS[attempt])
                continue
            if response.status_code in RETRY_STATUSES and not last:
                log.info("%s: HTTP %s (retrying)", what, response.status_code)
                await self._clock.sleep(RETRY_DELAYS[attempt])
                continue
            if response.status_code not in accept:
                self.raise_for_status(response, what, forbidden_is_auth=forbidden_is_auth)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        return self.decode_json(response, f"GET /{path}")

    def decode_json(self, response: httpx.Response, what: str) -> Any:
        try:
            return json.loads(response.content)
        except ValueError as exc:
            kind = response.headers.get("content-type", "no content type")
            hint = None
            if "html" in kind:
                hint = "a web page answered instead of ComfyUI's API: check the URL (and proxy)"
            raise ComfyProtocolError(
                f"{what} on {self.display_url}: answer is not JSON ({kind}): "
                f"{excerpt(response.content, 80)!r}",
                hint=hint,
            ) from exc

    def raise_for_status(
        self, response: httpx.Response, what: str, *, forbidden_is_auth: bool = True
    ) -> None:
        code = response.status_code
        if 200 <= code < 300:
            return
        body = excerpt(response.content)
        where = f"{what} on {self.display_url}"
        if code == 401 or (code == 403 and forbidden_is_auth):
            raise ComfyAuthError(f"{where}: HTTP {code}, credentials refused", hint=AUTH_HINT)
        if code == 404:
            raise ComfyNotFound(f"{where}: not found" + (f" ({body})" if body else ""), status=404)
        if 400 <= code < 500:
            raise ComfyRequestRejected(
                f"{where}: HTTP {code} {response.reason_phrase}" + (f": {body}" if body else ""),
                status=code,
            )
        if code in RETRY_STATUSES:
            raise ComfyUnreachable(
                f"{where}: HTTP {code} from a proxy in front of ComfyUI",
                hint=UNREACHABLE_HINT,
                maybe_delivered=code in _GATEWAY_MAY_HAVE_SENT,
            )
        raise ComfyProtocolError(f"{where}: HTTP {code}" + (f": {body}" if body else ""))

    def unreachable(self, exc: httpx.TransportError, what: str) -> ComfyUnreachable:
        return ComfyUnreachable(
            f"cannot reach ComfyUI at {self.display_url} ({what}: {_describe(exc)})",
            hint=UNREACHABLE_HINT,
            maybe_delivered=not isinstance(exc, _NEVER_SENT),
        )

    async def download(self, path: str, params: Mapping[str, str], dest: Path) -> Fetched:
        """Stream a GET to `dest` through `dest.part`, hashing as it goes; retried like GETs.

        The final name appears only once the whole body is on disk.
        """
        what = f"GET /{path}"
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(len(RETRY_DELAYS) + 1):
            last = attempt == len(RETRY_DELAYS)
            try:
                return await self._download_once(path, params, dest, part, what, last=last)
            except httpx.TransportError as exc:
                error = self.unreachable(exc, what)
                if last or not _retryable_transport(exc):
                    raise error from exc
                log.info("%s (retrying)", error.message)
            except _RetryStatus as exc:
                log.info("%s: HTTP %s (retrying)", what, exc.status)
            finally:
                part.unlink(missing_ok=True)
            await self._clock.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _download_once(
        self, path: str, params: Mapping[str, str], dest: Path, part: Path, what: str, *, last: bool
    ) -> Fetched:
        digest = hashlib.sha256()
        size = 0
        async with self._client.stream("GET", path, params=params) as response:
            if response.status_code in RETRY_STATUSES and not last:
                raise _RetryStatus(response.status_code)
            if response.status_code >= 300:
                await response.aread()
                self.raise_for_status(response, what, forbidden_is_auth=False)
            with part.open("wb") as fh:
                async for chunk in response.aiter_bytes(_CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            expected = response.headers.get("content-length")
            if expected is not None and expected.isdigit() and int(expected) != size:
                raise ComfyProtocolError(
                    f"{what} on {self.display_url}: got {size} bytes, "
                    f"Content-Length said {expected}"
                )
            content_type = response.headers.get("content-type")
        os.replace(part, dest)
        return Fetched(size, digest.hexdigest(), content_type)


class _RetryStatus(Exception):
    """A 502/503/504 answer to a download: try again (never leaves this module)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# Failures that leave the request unsent; any other may come after the server has it.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError,
               httpx.WriteTimeout, httpx.UnsupportedProtocol)  # fmt: skip
# Gateway answers that can come after the request was passed on (502 bad gateway after the
# upstream dropped, 504 gateway timeout); a 503 means it was not.
_GATEWAY_MAY_HAVE_SENT = frozenset({502, 504})


def _retryable_transport(exc: httpx.TransportError) -> bool:
    # A read timeout means the server is alive but slow: repeating the request only doubles
    # the wait, so it is reported at once.
    return not isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout)


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.ReadTimeout):
        return "no answer in time"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        causes = _causes(exc)
        if any(isinstance(c, ConnectionRefusedError) for c in causes):
            return "connection refused"
        if any(isinstance(c, socket.gaierror) for c in causes):
            return "host name not found"
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed unexpectedly"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "connection reset"
    return type(exc).__name__
