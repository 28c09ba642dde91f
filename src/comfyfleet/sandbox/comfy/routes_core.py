"""Prompt, queue, history, node-info and system routes (ComfyUI's `server.py`)."""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from comfyfleet.graph.validate import PromptValidation, validate_prompt
from comfyfleet.sandbox.comfy.core import ComfyCore
from comfyfleet.sandbox.comfy.hub import SERVER_FEATURES

TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"

INDEX_HTML = (
    "<!doctype html><html><head><title>ComfyUI</title></head>"
    "<body><p>ComfyUI sandbox (API only)</p></body></html>"
)


@cache
def _extensions() -> list[str]:
    data: list[str] = json.loads(
        (resources.files("comfyfleet.sandbox.comfy") / "data" / "extensions.json").read_text()
    )
    return data


def pack_extensions(web_dirs: Mapping[str, Path]) -> list[str]:
    """The `/extensions/<pack>/<file>.js` URLs of the packs' web folders, as ComfyUI lists them."""
    urls: list[str] = []
    for name, folder in web_dirs.items():
        for path in sorted(folder.glob("**/*.js")):
            rel = path.relative_to(folder).as_posix()
            urls.append(f"/extensions/{urllib.parse.quote(name)}/{rel}")
    return urls


async def read_json(request: web.Request) -> Any:
    """The JSON body; malformed JSON fails the request with aiohttp's bare 500, as in ComfyUI."""
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPInternalServerError(text=TROUBLE) from exc


def _log_validation(core: ComfyCore, result: PromptValidation) -> None:
    printed: set[str] = set()
    outputs: list[str] = []
    for entry in result.node_errors.values():
        for output in entry["dependent_outputs"]:
            if output not in outputs:
                outputs.append(output)
    for output in outputs:
        core.book.line(f"Failed to validate prompt for output {output}:")
        own = result.node_errors.get(output)
        if own is not None:
            core.book.line("* (prompt):")
            for err in own["errors"]:
                core.book.line(f"  - {err['message']}: {err['details']}")
        for node_id, entry in result.node_errors.items():
            if output in entry["dependent_outputs"] and node_id not in printed:
                printed.add(node_id)
                core.book.line(f"* {entry['class_type']} {node_id}:")
                for err in entry["errors"]:
                    core.book.line(f"  - {err['message']}: {err['details']}")
        core.book.line("Output will be ignored")


def add_core_routes(routes: web.RouteTableDef, core: ComfyCore) -> None:
    @routes.get("/ws")
    async def websocket(request: web.Request) -> web.StreamResponse:
        return await core.hub.handle(request)

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        return web.Response(
            body=INDEX_HTML.encode(),
            headers={
                "Content-Type": "text/html",
                "Cache-Control": "no-cache",
                "Pragma": "no-cache",
                "Expires": "0",
            },
        )

    @routes.get("/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response(
            [os.path.splitext(n)[0] for n in core.layout.filename_list("embeddings")]
        )

    @routes.get("/models")
    async def models(request: web.Request) -> web.Response:
        return web.json_response(core.layout.folder_names())

    @routes.get("/models/{folder}")
    async def models_in(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in core.layout.folder_names():
            return web.Response(status=404)
        return web.json_response(core.layout.filename_list(folder))

    @routes.get("/extensions")
    async def extensions(request: web.Request) -> web.Response:
        return web.json_response(_extensions() + pack_extensions(core.packs.web_dirs))

    @routes.get("/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return web.json_response(core.system_stats())

    @routes.get("/features")
    async def features(request: web.Request) -> web.Response:
        return web.json_response(dict(SERVER_FEATURES))

    @routes.get("/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return web.json_response(core.queue_info())

    @routes.get("/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return web.json_response(dict(core.catalog(report=core.book.write).raw))

    @routes.get("/object_info/{node_class}")
    async def object_info_one(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        catalog = core.catalog(report=core.book.write)
        return web.json_response({name: catalog.raw[name]} if name in catalog else {})

    @routes.get("/history")
    async def history(request: web.Request) -> web.Response:
        query = request.rel_url.query
        try:
            max_items = int(query["max_items"]) if "max_items" in query else None
            offset = int(query["offset"]) if "offset" in query else -1
        except ValueError as exc:
            raise web.HTTPInternalServerError(text=TROUBLE) from exc
        return web.json_response(core.queue.get_history(max_items=max_items, offset=offset))

    @routes.get("/history/{prompt_id}")
    async def history_one(request: web.Request) -> web.Response:
        return web.json_response(core.queue.history_item(request.match_info["prompt_id"]))

    @routes.get("/queue")
    async def get_queue(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "queue_running": list(core.queue.running.values()),
                "queue_pending": core.queue.pending(),
            }
        )

    @routes.post("/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        core.book.line("got prompt")
        data = await read_json(request)
        if not isinstance(data, dict):
            raise web.HTTPInternalServerError(text=TROUBLE)
        if "number" in data:
            try:
                number: float = float(data["number"])
            except (TypeError, ValueError) as exc:
                raise web.HTTPInternalServerError(text=TROUBLE) from exc
        else:
            number = core.number
            if data.get("front"):
                number = -number
            core.number += 1
        if "prompt" not in data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt_id = str(data.get("prompt_id", uuid.uuid4()))
        try:
            result = validate_prompt(
                data["prompt"],
                core.catalog(),
                partial_targets=data.get("partial_execution_targets"),
                custom=core.validations(),
            )
        except (TypeError, AttributeError) as exc:
            raise web.HTTPInternalServerError(text=TROUBLE) from exc
        _log_validation(core, result)
        extra_data = data.get("extra_data", {})
        if "client_id" in data and isinstance(extra_data, dict):
            extra_data["client_id"] = data["client_id"]
        if result.ok:
            core.queue.put([number, prompt_id, result.prompt, extra_data, result.outputs])
            return web.json_response(
                {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}
            )
        core.book.line(f"invalid prompt: {result.error!r}")
        return web.json_response(result.error_body(), status=400)

    @routes.post("/queue")
    async def post_queue(request: web.Request) -> web.Response:
        data = await read_json(request)
        if data.get("clear"):
            core.queue.wipe()
        for prompt_id in data.get("delete", []):
            core.queue.delete(prompt_id)
        return web.Response(status=200)

    @routes.post("/interrupt")
    async def interrupt(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            data = {}
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        if prompt_id:
            if prompt_id in core.running_ids():
                core.book.line(f"Interrupting prompt {prompt_id}")
                core.executor.interrupt()
            else:
                core.book.line(f"Prompt {prompt_id} is not currently running, skipping interrupt")
        else:
            core.book.line("Global interrupt (no prompt_id specified)")
            core.executor.interrupt()
        return web.Response(status=200)

    @routes.post("/free")
    async def free(request: web.Request) -> web.Response:
        data = await read_json(request)
        if data.get("unload_models", False):
            core.queue.set_flag("unload_models", data["unload_models"])
        if data.get("free_memory", False):
            core.queue.set_flag("free_memory", data["free_memory"])
        return web.Response(status=200)

    @routes.post("/history")
    async def post_history(request: web.Request) -> web.Response:
        data = await read_json(request)
        if data.get("clear"):
            core.queue.history.clear()
        for prompt_id in data.get("delete", []):
            core.queue.history.pop(prompt_id, None)
        return web.Response(status=200)

    @routes.get("/workflow_templates")
    async def workflow_templates(request: web.Request) -> web.Response:
        return web.json_response({})

    @routes.get("/i18n")
    async def i18n(request: web.Request) -> web.Response:
        return web.json_response({})
