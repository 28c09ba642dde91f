"""User data and settings routes, single-user mode (ComfyUI's `app/user_manager.py`,
`app/app_settings.py`). Files live under `<root>/user/default/`."""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any
from urllib import parse

from aiohttp import web

from comfyfleet.sandbox.comfy.core import ComfyCore


def _file_info(path: str, relative_to: str) -> dict[str, Any]:
    return {
        "path": os.path.relpath(path, relative_to).replace(os.sep, "/"),
        "size": os.path.getsize(path),
        "modified": os.path.getmtime(path),
        "created": os.path.getctime(path),
    }


def add_user_routes(routes: web.RouteTableDef, core: ComfyCore) -> None:
    user_dir = str(core.layout.user)

    def user_path(file: str | None, create_dir: bool = True) -> str | None:
        user_root = os.path.abspath(os.path.join(user_dir, "default"))
        path = user_root
        if file is not None:
            if "%" in file:
                file = parse.unquote(file)
            path = os.path.abspath(os.path.join(user_root, file))
            if os.path.commonpath((user_root, path)) != user_root:
                return None
        parent = os.path.split(path)[0]
        if create_dir and not os.path.exists(parent):
            os.makedirs(parent, exist_ok=True)
        return path

    def settings_file() -> str:
        path = user_path("comfy.settings.json")
        assert path is not None
        return path

    def load_settings() -> dict[str, Any]:
        path = settings_file()
        if os.path.isfile(path):
            try:
                with open(path) as fh:
                    data: dict[str, Any] = json.load(fh)
                    return data
            except (OSError, ValueError):
                core.book.line(f"The user settings file is corrupted: {path}")
        return {}

    def save_settings(settings: dict[str, Any]) -> None:
        with open(settings_file(), "w") as fh:
            fh.write(json.dumps(settings, indent=4))

    @routes.get("/users")
    async def get_users(request: web.Request) -> web.Response:
        path = user_path(None, create_dir=False)
        return web.json_response(
            {"storage": "server", "migrated": bool(path and os.path.exists(path))}
        )

    @routes.post("/users")
    async def post_users(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("username") == "default":
            return web.json_response({"error": "Duplicate username."}, status=400)
        return web.json_response("default")

    @routes.get("/settings")
    async def get_settings(request: web.Request) -> web.Response:
        return web.json_response(load_settings())

    @routes.get("/settings/{id}")
    async def get_setting(request: web.Request) -> web.Response:
        return web.json_response(load_settings().get(request.match_info["id"]))

    @routes.post("/settings")
    async def post_settings(request: web.Request) -> web.Response:
        new = await request.json()
        save_settings({**load_settings(), **new})
        return web.Response(status=200)

    @routes.post("/settings/{id}")
    async def post_setting(request: web.Request) -> web.Response:
        settings = load_settings()
        settings[request.match_info["id"]] = await request.json()
        save_settings(settings)
        return web.Response(status=200)

    @routes.get("/userdata")
    async def list_userdata(request: web.Request) -> web.Response:
        query = request.rel_url.query
        directory = query.get("dir", "")
        if not directory:
            return web.Response(status=400, text="Directory not provided")
        path = user_path(directory)
        if not path:
            return web.Response(status=403, text="Invalid directory")
        if not os.path.exists(path):
            return web.Response(status=404, text="Directory not found")
        recurse = query.get("recurse", "").lower() == "true"
        full_info = query.get("full_info", "").lower() == "true"
        split = query.get("split", "").lower() == "true"
        pattern = (
            os.path.join(glob.escape(path), "**", "*")
            if recurse
            else os.path.join(glob.escape(path), "*")
        )
        results: list[Any] = []
        for full in glob.glob(pattern, recursive=recurse):
            if not os.path.isfile(full):
                continue
            if full_info:
                results.append(_file_info(full, path))
                continue
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            results.append([rel, *rel.split("/")] if split else rel)
        return web.json_response(results)

    @routes.get("/v2/userdata")
    async def list_userdata_v2(request: web.Request) -> web.Response:
        rel = parse.unquote(request.rel_url.query.get("path", ""))
        base = user_path(None, create_dir=False)
        target = user_path(rel, create_dir=False) if rel else base
        if not target or not base:
            return web.Response(status=400, text="Invalid path requested")
        if not os.path.exists(target):
            if target == base:
                return web.json_response([])
            return web.Response(status=404, text="Requested path not found")
        if not os.path.isdir(target):
            return web.Response(status=400, text="Requested path is not a directory")
        results: list[dict[str, Any]] = []
        for walk_root, dirs, files in os.walk(target, topdown=True):
            for name in dirs:
                results.append(
                    {
                        "name": name,
                        "path": os.path.relpath(os.path.join(walk_root, name), base),
                        "type": "directory",
                    }
                )
            for name in files:
                full = os.path.join(walk_root, name)
                entry: dict[str, Any] = {
                    "name": name,
                    "path": os.path.relpath(full, base),
                    "type": "file",
                }
                stat = os.stat(full)
                entry["size"], entry["modified"] = stat.st_size, stat.st_mtime
                results.append(entry)
        results.sort(key=lambda x: (x["type"] != "directory", x["name"].lower()))
        return web.json_response(results)

    def data_path(
        request: web.Request, check_exists: bool = False, param: str = "file"
    ) -> str | web.Response:
        file = request.match_info.get(param)
        if not file:
            return web.Response(status=400)
        path = user_path(file)
        if not path:
            return web.Response(status=403)
        if check_exists and not os.path.exists(path):
            return web.Response(status=404)
        return path

    def answer(path: str, full_info: bool) -> web.Response:
        root = user_path(None)
        assert root is not None
        return web.json_response(
            _file_info(path, root) if full_info else os.path.relpath(path, root)
        )

    @routes.get("/userdata/{file}")
    async def get_userdata(request: web.Request) -> web.StreamResponse:
        path = data_path(request, check_exists=True)
        return path if isinstance(path, web.Response) else web.FileResponse(path)

    @routes.post("/userdata/{file}")
    async def post_userdata(request: web.Request) -> web.Response:
        path = data_path(request)
        if isinstance(path, web.Response):
            return path
        overwrite = request.query.get("overwrite", "true") != "false"
        full_info = request.query.get("full_info", "false").lower() == "true"
        if not overwrite and os.path.exists(path):
            return web.Response(status=409, text="File already exists")
        body = await request.read()
        try:
            with open(path, "wb") as fh:
                fh.write(body)
        except OSError:
            return web.Response(
                status=400,
                reason='Invalid filename. Please avoid special characters like :\\/*?"<>|',
            )
        return answer(path, full_info)

    @routes.delete("/userdata/{file}")
    async def delete_userdata(request: web.Request) -> web.Response:
        path = data_path(request, check_exists=True)
        if isinstance(path, web.Response):
            return path
        os.remove(path)
        return web.Response(status=204)

    @routes.post("/userdata/{file}/move/{dest}")
    async def move_userdata(request: web.Request) -> web.Response:
        source = data_path(request, check_exists=True)
        if isinstance(source, web.Response):
            return source
        dest = data_path(request, param="dest")
        if isinstance(dest, web.Response):
            return dest
        if request.query.get("overwrite", "true") == "false" and os.path.exists(dest):
            return web.Response(status=409, text="File already exists")
        core.book.line(f"moving '{source}' -> '{dest}'")
        shutil.move(source, dest)
        return answer(dest, request.query.get("full_info", "false").lower() == "true")
