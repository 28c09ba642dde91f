"""`/__sandbox/`: the control API real ComfyUI does not have, for tests in other processes.

GET  /__sandbox/knobs   -> the knob state.
POST /__sandbox/knobs   -> apply any of these keys, answer the new state:
    {"durations": {"KSampler": 0.1}, "slow": {"3": 30}, "hang": ["KSampler"],
     "release": ["KSampler"] | true, "crash": {"8": {"exception_type": "RuntimeError",
     "message": "boom"}}, "fail": {"count": 2, "status": 502}, "drop_websockets": {"after": 5},
     "refuse": {"seconds": 10}, "previews": "auto", "reset": true,
     "persisted_queue": true, "corrupt_queue_db": true}
A refusal without "seconds" can only be lifted through the Python API (nothing listens).
"persisted_queue" switches the persisted-queue mode for this process (a host keeps it across
restarts with `--persisted-queue` in COMFYUI_ARGS); "corrupt_queue_db" writes garbage over
`user/queue.db` and its journal, which hangs the queue of a server in that mode.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comfyfleet.sandbox.comfy.knobs import Knobs


def apply_knobs(knobs: Knobs, body: dict[str, Any]) -> None:
    """Apply one control request (see the module docstring)."""
    if body.get("reset"):
        knobs.reset()
    for class_type, seconds in (body.get("durations") or {}).items():
        knobs.set_duration(class_type, float(seconds))
    for target, seconds in (body.get("slow") or {}).items():
        knobs.slow(target, float(seconds))
    for target in body.get("hang") or []:
        knobs.hang(target)
    release = body.get("release")
    if release is True:
        knobs.release()
    elif isinstance(release, list):
        for target in release:
            knobs.release(target)
    for target, spec in (body.get("crash") or {}).items():
        knobs.crash(
            target,
            spec.get("exception_type", "RuntimeError"),
            spec.get("message", "simulated failure"),
        )
    if "fail" in body:
        knobs.fail_requests(int(body["fail"].get("count", 1)), int(body["fail"].get("status", 500)))
    if "drop_websockets" in body:
        knobs.drop_websockets(int((body["drop_websockets"] or {}).get("after", 0)))
    if "previews" in body:
        knobs.enable_previews(str(body["previews"]))
    if "forge_output" in body:
        forged = body["forge_output"] or {}
        knobs.forge_output_names(str(forged.get("subfolder", "")), str(forged["filename"]))
    if "persisted_queue" in body:
        knobs.persist_queue(bool(body["persisted_queue"]))
    if body.get("corrupt_queue_db"):
        knobs.corrupt_queue_db()
    if "refuse" in body:
        knobs.refuse_connections((body["refuse"] or {}).get("seconds"))


def add_control_routes(routes: web.RouteTableDef, knobs: Knobs) -> None:
    @routes.get("/__sandbox/knobs")
    async def get_knobs(request: web.Request) -> web.Response:
        return web.json_response(knobs.snapshot())

    @routes.post("/__sandbox/knobs")
    async def post_knobs(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("a JSON object is expected")
            apply_knobs(knobs, body)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(knobs.snapshot())
