"""Instance endpoints: create, list (v1 paged and legacy v0), show, manage, destroy, logs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
from typing import Any

from aiohttp import web

from comfyfleet.sandbox.vast import actions, query
from comfyfleet.sandbox.vast.api_offers import find_offers
from comfyfleet.sandbox.vast.context import CTX, Context, LogResult
from comfyfleet.sandbox.vast.errors import ApiError
from comfyfleet.sandbox.vast.instance import Instance
from comfyfleet.sandbox.vast.render import FILTERABLE_COLUMNS, instance_row, select_columns
from comfyfleet.sandbox.vast.wire import Route, int_param, json_response, query_value, read_json

PAGE_MAX = 25
PAGE_NON_POSITIVE = 5


def _done(ctx: Context, data: Any, status: int = 200) -> web.Response:
    ctx.changed()
    return json_response(data, status=status)


async def create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    offer_id = int_param(request, "offer_id")
    inst, forced = actions.create_instance(ctx.world, offer_id, await read_json(request))
    return _created(ctx, inst, forced, offer_id)


def _created(ctx: Context, inst: Instance, forced: int | None, offer_id: int) -> web.Response:
    """The create answer; with the fault knob, an error although the contract exists."""
    if forced is not None:
        ctx.changed()
        code = "server_error" if forced >= 500 else "invalid_args"
        raise ApiError(forced, code, "error creating instance; please try again", ask_id=offer_id)
    return _done(ctx, {"success": True, "new_contract": inst.id, "instance_api_key": inst.api_key})


async def launch(request: web.Request) -> web.Response:
    """PUT /launch_instance/: search with `q` and rent the best offer in one call."""
    ctx = request.app[CTX]
    body = await read_json(request)
    q = body.get("q") if isinstance(body, dict) else None
    if not isinstance(q, dict):
        raise ApiError(400, "invalid_args", "launch_instance needs a query object in q")
    offers = find_offers(ctx, {**q, "limit": 1})
    if not offers:
        raise ApiError(404, "no_such_ask", "No offers match the launch query.")
    inst, forced = actions.create_instance(ctx.world, offers[0]["id"], body)
    return _created(ctx, inst, forced, offers[0]["id"])


def _rows(ctx: Context) -> list[dict[str, Any]]:
    world = ctx.world
    return [instance_row(world, i) for i in sorted(world.instances.values(), key=lambda i: i.id)]


def _order(value: Any) -> list[tuple[str, bool]]:
    keys: list[tuple[str, bool]] = []
    for entry in value or []:
        if isinstance(entry, dict):
            col, direction = entry.get("col"), str(entry.get("dir", "asc")).lower()
        elif isinstance(entry, list | tuple) and entry:
            col, direction = entry[0], str(entry[1] if len(entry) > 1 else "asc").lower()
        else:
            raise ApiError(400, "invalid_request", f"bad order_by entry {entry!r}")
        if col not in FILTERABLE_COLUMNS or direction not in ("asc", "desc"):
            raise ApiError(400, "invalid_request", f"cannot order by {col!r} {direction!r}")
        keys.append((str(col), direction == "desc"))
    if not any(col == "id" for col, _ in keys):
        keys.append(("id", False))  # Vast always adds id as the last tiebreaker
    return keys


def _token(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"values": values}).encode()).decode()


def _untoken(token: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))["values"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "invalid_token", "invalid after_token") from exc
    if not isinstance(values, list):
        raise ApiError(400, "invalid_token", "invalid after_token")
    return values


async def list_v1(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    match = query.row_matcher(query_value(request, "select_filters"), FILTERABLE_COLUMNS)
    keys = _order(query_value(request, "order_by"))
    rows = query.sort_rows([r for r in _rows(ctx) if match(r)], keys)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["label"] or ""] = counts.get(row["label"] or "", 0) + 1
    start = 0
    after = request.query.get("after_token")
    if after:
        cursor = _untoken(after)
        if len(cursor) != len(keys):
            raise ApiError(400, "invalid_token", "after_token does not match order_by")
        cmp = query.row_comparator(keys)
        start = next((n for n, r in enumerate(rows) if cmp(r, cursor) > 0), len(rows))
    raw_limit = query_value(request, "limit")
    try:
        limit = PAGE_MAX if raw_limit is None else int(raw_limit)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_request", f"bad limit {raw_limit!r}") from exc
    limit = PAGE_NON_POSITIVE if limit <= 0 else min(limit, PAGE_MAX)
    page = rows[start : start + limit]
    more = start + limit < len(rows)
    next_token = _token([page[-1].get(k) for k, _ in keys]) if more and page else None
    columns = query_value(request, "select_cols")
    cols = columns if isinstance(columns, list) else None
    return json_response(
        {
            "success": True,
            "instances_found": len(page),
            "total_instances": len(rows),
            "label_counts": counts,
            "next_token": next_token,
            "instances": [select_columns(r, cols) for r in page],
        }
    )


async def list_v0(request: web.Request) -> web.Response:
    return json_response({"instances": _rows(request.app[CTX])})


async def show(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instances.get(int_param(request, "id"))
    return json_response({"instances": None if inst is None else instance_row(ctx.world, inst)})


async def manage(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instance(int_param(request, "id"))
    return _done(ctx, actions.manage_instance(ctx.world, inst, await read_json(request)))


async def manage_many(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or "state" not in body:
        raise ApiError(400, "invalid_args", "expected state and ids")
    for instance_id in ids:
        inst = ctx.world.instances.get(int(instance_id))
        if inst is not None:
            actions.set_state(ctx.world, inst, body["state"])
    return _done(ctx, {"success": True})


def _destroy(ctx: Context, instance_id: int) -> None:
    inst = ctx.world.instances.get(instance_id)
    if inst is None:
        raise ApiError(404, "not_found", f"Instance {instance_id} not found.")
    inst.log(ctx.world.sim_now, "daemon", "destroyed by user request")
    ctx.world.remove_instance(inst)


async def destroy(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    _destroy(ctx, int_param(request, "id"))
    return _done(ctx, {"success": True})


async def destroy_many(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    ids = body.get("instance_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        raise ApiError(400, "invalid_args", "expected instance_ids")
    for instance_id in ids:
        if int(instance_id) in ctx.world.instances:
            _destroy(ctx, int(instance_id))
    return _done(ctx, {"success": True})


async def reboot(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instances.get(int_param(request, "id"))
    if inst is None:
        raise ApiError(400, "invalid_args", "Invalid instance id.")
    actions.reboot_instance(ctx.world, inst)
    return _done(ctx, {"success": True})


async def recycle(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instances.get(int_param(request, "id"))
    if inst is None:
        raise ApiError(400, "invalid_id", "Invalid instance id.")
    actions.recycle_instance(ctx.world, inst)
    return _done(ctx, {"success": True})


def _log_text(ctx: Context, inst: Instance, body: dict[str, Any]) -> str:
    daemon = str(body.get("daemon_logs", "")).lower() == "true"
    lines = [
        f"{dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec='seconds')} {text}"
        for t, source, text in inst.events
        if (source == "daemon") == daemon
    ]
    root = ctx.host_root(inst.id)
    log_file = root / "var" / "log" / "portal" / "comfyui.log" if root else None
    if not daemon and log_file is not None and log_file.is_file():
        lines += log_file.read_text("utf-8", errors="replace").splitlines()
    pattern = body.get("filter")
    if pattern:
        try:
            rx = re.compile(str(pattern))
            lines = [line for line in lines if rx.search(line)]
        except re.error:
            lines = [line for line in lines if str(pattern) in line]
    try:
        tail = int(body.get("tail") or 1000)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_args", "tail must be a number") from exc
    return "".join(f"{line}\n" for line in lines[-tail:] if tail > 0)


async def request_logs(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instances.get(int_param(request, "id"))
    if inst is None:
        raise ApiError(404, "invalid_id", "Invalid instance id.")
    body = await read_json(request)
    token = secrets.token_hex(16)
    text = _log_text(ctx, inst, body if isinstance(body, dict) else {})
    ctx.results[token] = LogResult(text, ctx.knobs.logs_not_ready_polls)
    for stale in list(ctx.results)[:-200]:
        del ctx.results[stale]
    return json_response(
        {
            "success": True,
            "result_url": ctx.result_url(token),
            "msg": "Logs are being uploaded; poll result_url until it answers 200.",
        }
    )


async def filters(request: web.Request) -> web.Response:
    rows = _rows(request.app[CTX])
    combos = {(r["actual_status"], r["verification"], r["gpu_name"]) for r in rows}
    ordered = sorted(combos, key=lambda c: tuple(str(v) for v in c))
    out = [{"actual_status": a, "verification": v, "gpu_name": g} for a, v, g in ordered]
    return json_response({"filters": out})


async def attach_ssh(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instance(int_param(request, "id"))
    entry = actions.attach_key(ctx.world, inst, await read_json(request))
    return _done(ctx, {"success": True, "key": entry, "msg": f"SSH key added to {inst.id}."})


async def detach_ssh(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    inst = ctx.world.instance(int_param(request, "id"))
    actions.detach_key(ctx.world, inst, int_param(request, "key_id"))
    return _done(ctx, {"success": True})


ROUTES = [
    Route("PUT", r"/api/v0/asks/{offer_id:\d+}", create, "create_instance"),
    Route("PUT", "/api/v0/launch_instance", launch, "create_instance"),
    Route("GET", "/api/v1/instances", list_v1, "list_instances"),
    Route("GET", "/api/v0/instances", list_v0, "list_instances"),
    Route("PUT", "/api/v0/instances", manage_many, "manage_instance"),
    Route("DELETE", "/api/v0/instances", destroy_many, "destroy_instance"),
    Route("GET", "/api/v0/instances/filters", filters, "instance_filters"),
    Route("GET", r"/api/v0/instances/{id:\d+}", show, "show_instance"),
    Route("PUT", r"/api/v0/instances/{id:\d+}", manage, "manage_instance"),
    Route("DELETE", r"/api/v0/instances/{id:\d+}", destroy, "destroy_instance"),
    Route("PUT", r"/api/v0/instances/reboot/{id:\d+}", reboot, "reboot_instance"),
    Route("PUT", r"/api/v0/instances/recycle/{id:\d+}", recycle, "recycle_instance"),
    Route("PUT", r"/api/v0/instances/request_logs/{id:\d+}", request_logs, "request_logs"),
    Route("POST", r"/api/v0/instances/{id:\d+}/ssh", attach_ssh, "attach_ssh"),
    Route("DELETE", r"/api/v0/instances/{id:\d+}/ssh/{key_id:\d+}", detach_ssh, "attach_ssh"),
]
