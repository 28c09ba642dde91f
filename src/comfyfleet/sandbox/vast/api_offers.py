"""Offer search (`POST /api/v0/bundles/`, `PUT /api/v0/search/asks/`) and templates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from comfyfleet.sandbox.vast import query, templates
from comfyfleet.sandbox.vast.context import CTX, Context
from comfyfleet.sandbox.vast.errors import ApiError
from comfyfleet.sandbox.vast.market import render_offer
from comfyfleet.sandbox.vast.render import select_columns
from comfyfleet.sandbox.vast.wire import Route, json_response, query_value, read_json

DEFAULT_STORAGE_GB = 5.0


async def search_bundles(request: web.Request) -> web.Response:
    """The query object is the whole body."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "Invalid json body")
    return search(request.app[CTX], body)


async def search_asks(request: web.Request) -> web.Response:
    """The "new" search: `{"select_cols": [...], "q": <query object>}`."""
    body = await read_json(request)
    q = body.get("q") if isinstance(body, dict) else None
    if not isinstance(q, dict):
        raise ApiError(400, "invalid_request", "Invalid json body: expected q")
    return search(request.app[CTX], q)


def _quota_exceeded(ctx: Context) -> web.Response:
    now = dt.datetime.fromtimestamp(ctx.clock.now(), dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return json_response(
        {
            "success": False,
            "error": "search_quota_exceeded",
            "msg": "Daily search quota exceeded",
        },
        status=429,
        headers={"X-RateLimit-Reset": str(int(midnight.timestamp()))},
    )


def search(ctx: Context, q: dict[str, Any]) -> web.Response:
    if not ctx.knobs.take_search():
        return _quota_exceeded(ctx)
    return json_response({"offers": find_offers(ctx, q)})


def find_offers(ctx: Context, q: dict[str, Any]) -> list[dict[str, Any]]:
    """The offer rows a query object selects, ordered, cut to its limit, ranked (`rn`)."""
    kind = query.OFFER_TYPES.get(str(q.get("type", "on-demand")))
    if kind is None:
        raise ApiError(400, "invalid_request", f"unknown offer type {q.get('type')!r}")
    storage = q.get("allocated_storage", DEFAULT_STORAGE_GB)
    try:
        storage_gb = float(storage)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_request", f"bad allocated_storage {storage!r}") from exc
    world = ctx.world
    rented = world.rented_machines()
    rows = [
        render_offer(m, world.sim_now, storage_gb, kind, m.id in rented)
        for m in world.machines.values()
        if m.offer_id is not None
    ]
    known = set(rows[0]) if rows else set()
    match = query.offer_matcher(q, known)
    order = query.offer_order(q.get("order"), known)
    rows = query.sort_rows([r for r in rows if match(r)], [*order, ("id", False)])
    limit = q.get("limit")
    if limit is not None:
        try:
            rows = rows[: max(0, int(limit))]
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "invalid_request", f"bad limit {limit!r}") from exc
    for rank, row in enumerate(rows, 1):
        row["rn"] = rank
    return rows


async def search_templates(request: web.Request) -> web.Response:
    filters = query_value(request, "select_filters")
    columns = query_value(request, "select_cols")
    allowed = set(templates.COMFYUI_TEMPLATE) - {"extra_filters"}
    match = query.row_matcher(filters, allowed)
    found = [t for t in templates.TEMPLATES if match(t)]
    cols = columns if isinstance(columns, list) else None
    rows = [select_columns(dict(t), cols) for t in found]
    return json_response({"success": True, "templates_found": len(rows), "templates": rows})


async def gpu_names(request: web.Request) -> web.Response:
    """The GPU models on the market (the CLI fetches them, without a key, for --gpu-name)."""
    world = request.app[CTX].world
    names = sorted({str(m.base["gpu_name"]) for m in world.machines.values()})
    return json_response({"gpu_names": names})


#: Paths answered without an API key (as on Vast: the CLI sends none for them).
PUBLIC_API_PATHS = frozenset({"/api/v0/gpu_names/unique", "/api/v0/gpu_names/unique/"})

ROUTES = [
    Route("POST", "/api/v0/bundles", search_bundles, "search_offers"),
    Route("PUT", "/api/v0/search/asks", search_asks, "search_offers"),
    Route("GET", "/api/v0/template", search_templates, "templates"),
    Route("GET", "/api/v0/gpu_names/unique", gpu_names, "gpu_names"),
]
