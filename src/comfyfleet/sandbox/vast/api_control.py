"""The sandbox's own control API under `/__sandbox/` (not part of Vast's API).

    GET  /__sandbox/info                       {"speed", "api_url", "started_at", "version",
                                                "now", "hosts"} (no key needed)
    GET  /__sandbox/knobs                      the knob state
    POST /__sandbox/knobs                      change knobs: {"durations": {...},
                                                "rate_limits": {endpoint: s} | "vast",
                                                "search_quota": n, "fail_next": {"count",
                                                "status"}, "fail_creates": {...},
                                                "stick_next": n, "make_unavailable": n,
                                                "renter_probability": p,
                                                "logs_not_ready_polls": n, "credit": $,
                                                "reset": true}
    POST /__sandbox/instances/{id}/{action}    stick, unstick, offline, online, take_gpus,
                                                release_gpus, change_endpoint, crash
    GET  /__sandbox/state                      sim time, credit, every instance with its
                                                phase and cost so far
    POST /__sandbox/shutdown                   stop the sandbox (and every host)
    GET  /__sandbox/results/{token}.log        a log prepared by request_logs (no key, like
                                                the S3 URL Vast hands out)

Everything but info and results needs the sandbox's API key, like the Vast API.
"""

from __future__ import annotations

from aiohttp import web

from comfyfleet.sandbox.vast.context import CTX
from comfyfleet.sandbox.vast.errors import ApiError
from comfyfleet.sandbox.vast.wire import int_param, json_response, read_json, text_response

PUBLIC_PATHS = ("/__sandbox/info", "/__sandbox/results/")

_NOT_READY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    "<Message>The specified key does not exist.</Message></Error>"
)


async def info(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return json_response(
        {
            "speed": ctx.clock.speed,
            "api_url": ctx.base_url,
            "started_at": ctx.started_at,
            "version": ctx.version,
            "now": ctx.world.sim_now,
            "hosts": ctx.hosts,
        }
    )


async def get_knobs(request: web.Request) -> web.Response:
    return json_response(request.app[CTX].knobs.snapshot())


async def set_knobs(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_knob", "expected an object of knobs")
    try:
        ctx.knobs.apply(body)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ApiError(400, "invalid_knob", str(exc)) from exc
    ctx.changed()
    return json_response({"success": True, "knobs": ctx.knobs.snapshot()})


async def instance_action(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    instance_id = int_param(request, "id")
    ctx.world.instance(instance_id)
    try:
        ctx.knobs.instance_action(request.match_info["action"], instance_id)
    except ValueError as exc:
        raise ApiError(400, "invalid_knob", str(exc)) from exc
    ctx.changed()
    return json_response({"success": True})


async def state(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    world = ctx.world
    rows = [
        {
            "id": i.id,
            "label": i.label,
            "phase": i.phase.value,
            "actual_status": i.actual_status,
            "intended_status": i.intended,
            "gpu_name": world.machines[i.machine_id].base["gpu_name"],
            "num_gpus": i.num_gpus,
            "dph_now": round(i.rate, 6),
            "cost": round(i.cost_compute + i.cost_storage, 6),
            "host_pid": i.host_pid,
        }
        for i in sorted(world.instances.values(), key=lambda i: i.id)
    ]
    spent = sum(i.cost_compute + i.cost_storage for i in world.instances.values())
    spent += sum(c["compute"] + c["storage"] for c in world.closed)
    return json_response(
        {
            "now": world.sim_now,
            "speed": ctx.clock.speed,
            "credit": round(world.account.credit, 6),
            "spent": round(spent, 6),
            "billing_per_hour": round(sum(i.rate for i in world.instances.values()), 6),
            "instances": rows,
        }
    )


async def shutdown(request: web.Request) -> web.Response:
    request.app[CTX].shutdown()
    return json_response({"success": True})


async def result(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    entry = ctx.results.get(request.match_info["token"])
    if entry is None:
        return text_response(_NOT_READY, 404, "application/xml")
    if entry.not_ready_polls > 0:
        entry.not_ready_polls -= 1
        return text_response(_NOT_READY, 404, "application/xml")
    return text_response(entry.text)


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/__sandbox/info", info)
    app.router.add_get("/__sandbox/knobs", get_knobs)
    app.router.add_post("/__sandbox/knobs", set_knobs)
    app.router.add_post(r"/__sandbox/instances/{id:\d+}/{action}", instance_action)
    app.router.add_get("/__sandbox/state", state)
    app.router.add_post("/__sandbox/shutdown", shutdown)
    app.router.add_get(r"/__sandbox/results/{token:[0-9a-f]+}.log", result)
