"""HTTP plumbing shared by the API handlers: exact content types, bodies, query values, routes.

Vast's CLI rejects a search answer whose Content-Type is not exactly `application/json`, so
every JSON answer is built here without a charset. Query values arrive the way the official
client sends them: JSON-encoded then URL-encoded, except plain strings which are sent raw.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from comfyfleet.sandbox.vast.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One API route; `endpoint` names it for rate limits (see VastKnobs.rate_limit)."""

    method: str
    path: str
    handler: Handler
    endpoint: str


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(exc: ApiError) -> web.Response:
    return json_response(exc.body(), status=exc.status)


def text_response(text: str, status: int = 200, content_type: str = "text/plain") -> web.Response:
    return web.Response(body=text.encode(), status=status, content_type=content_type)


async def read_json(request: web.Request) -> Any:
    """The JSON body ({} when empty); 400 `invalid_request` when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", "Invalid json body") from exc


def query_value(request: web.Request, name: str) -> Any:
    """A query parameter decoded as the official client encodes it (JSON, else the raw text)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def int_param(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except (KeyError, ValueError) as exc:
        raise ApiError(400, "invalid_args", f"{name} must be an integer") from exc


def add_routes(app: web.Application, routes: list[Route]) -> dict[Handler, str]:
    """Register each route with and without its trailing slash; returns handler -> endpoint."""
    endpoints: dict[Handler, str] = {}
    for route in routes:
        path = route.path.rstrip("/")
        app.router.add_route(route.method, path, route.handler)
        app.router.add_route(route.method, path + "/", route.handler)
        endpoints[route.handler] = route.endpoint
    return endpoints
