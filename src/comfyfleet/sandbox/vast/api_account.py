"""Account endpoints: the current user (credit moves with billing), SSH keys, invoices."""

from __future__ import annotations

from aiohttp import web

from comfyfleet.sandbox.vast import actions
from comfyfleet.sandbox.vast.context import CTX
from comfyfleet.sandbox.vast.render import key_row, user_row
from comfyfleet.sandbox.vast.wire import Route, int_param, json_response, read_json


async def current_user(request: web.Request) -> web.Response:
    return json_response(user_row(request.app[CTX].world))


async def list_keys(request: web.Request) -> web.Response:
    world = request.app[CTX].world
    return json_response([key_row(world, k) for k in world.ssh_keys])


async def create_key(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = actions.add_key(ctx.world, await read_json(request))
    ctx.changed()
    return json_response({"success": True, "key": key_row(ctx.world, key)})


async def update_key(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = actions.update_key(ctx.world, int_param(request, "key_id"), await read_json(request))
    ctx.changed()
    return json_response({"success": True, "key": key_row(ctx.world, key)})


async def delete_key(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    actions.delete_key(ctx.world, int_param(request, "key_id"))
    ctx.changed()
    return json_response({"success": True})


async def invoices(request: web.Request) -> web.Response:
    """Legacy invoices: one charge per instance (live and destroyed) with its cost so far."""
    world = request.app[CTX].world
    rows = [
        {
            "type": "charge",
            "instance_id": c["instance_id"],
            "description": f"Instance {c['instance_id']} ({c['label'] or 'unlabelled'})",
            "amount": round(c["compute"] + c["storage"], 6),
            "compute": round(c["compute"], 6),
            "storage": round(c["storage"], 6),
            "timestamp": c["ended"],
        }
        for c in world.closed
    ]
    rows += [
        {
            "type": "charge",
            "instance_id": i.id,
            "description": f"Instance {i.id} ({i.label or 'unlabelled'})",
            "amount": round(i.cost_compute + i.cost_storage, 6),
            "compute": round(i.cost_compute, 6),
            "storage": round(i.cost_storage, 6),
            "timestamp": world.sim_now,
        }
        for i in world.instances.values()
    ]
    total = round(sum(r["amount"] for r in rows), 6)
    return json_response(
        {"invoices": rows, "current": {"charges": total, "credit": round(world.account.credit, 6)}}
    )


ROUTES = [
    Route("GET", "/api/v0/users/current", current_user, "current_user"),
    Route("GET", "/api/v0/ssh", list_keys, "ssh_keys"),
    Route("POST", "/api/v0/ssh", create_key, "ssh_keys"),
    Route("PUT", r"/api/v0/ssh/{key_id:\d+}", update_key, "ssh_keys"),
    Route("DELETE", r"/api/v0/ssh/{key_id:\d+}", delete_key, "ssh_keys"),
    Route("GET", "/api/v0/users/me/invoices", invoices, "invoices"),
]
