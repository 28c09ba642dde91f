"""HTTP for the catalogs: one httpx client, conditional GETs, and error mapping.

Transport failures, timeouts and 5xx become `CatalogUnavailable`; bodies that are not JSON
become `CatalogFormatError`. 404 is an answer (`Response.status`), not an error: "the
registry knows no such class" is information. Messages name hosts by their redacted URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from comfyfleet import __version__
from comfyfleet.errors import CatalogFormatError, CatalogUnavailable
from comfyfleet.util.redact import redact_url
from comfyfleet.util.resource import AsyncResource

USER_AGENT = f"comfyfleet/{__version__}"


@dataclass(frozen=True)
class Response:
    """Status, the headers the cache needs, and the raw body."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self, what: str) -> Any:
        """The body as JSON; anything else is a CatalogFormatError naming `what`."""
        import json

        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CatalogFormatError(
                f"{what} is not JSON ({exc})", hint="check the URL in the [catalog] settings"
            ) from exc


class CatalogHttp(AsyncResource):
    """GET with timeouts and error mapping; use as `async with CatalogHttp(...) as http:`."""

    def __init__(
        self,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Response:
        """One GET; 2xx, 304 and 4xx come back as a Response, the rest raises."""
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        shown = redact_url(url)
        try:
            answer = await self._client.get(url, headers=sent, params=params)
        except httpx.TimeoutException as exc:
            raise CatalogUnavailable(f"{shown} did not answer in time", hint=_OFFLINE_HINT) from exc
        except (httpx.TransportError, OSError) as exc:
            raise CatalogUnavailable(
                f"cannot reach {shown}: {type(exc).__name__}: {exc}".rstrip(": "),
                hint=_OFFLINE_HINT,
            ) from exc
        except httpx.InvalidURL as exc:
            raise CatalogFormatError(
                f"not a usable URL: {shown}", hint="fix it in the [catalog] settings"
            ) from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise CatalogUnavailable(
                f"{shown} answered HTTP {answer.status_code}", hint="try again later"
            )
        kept = {
            k.lower(): v
            for k, v in answer.headers.items()
            if k.lower() in {"etag", "last-modified", "content-type"}
        }
        return Response(answer.status_code, answer.content, kept)


_OFFLINE_HINT = (
    "check the network, or set COMFYFLEET_CATALOG__OFFLINE=1 to use cached and shipped catalogs"
)
