"""Upload, view and model-file routes, and the /internal sub-app (ComfyUI's `server.py`,
`app/model_manager.py`, `api_server/routes/internal/internal_routes.py`)."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import shutil
from io import BytesIO
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from comfyfleet.sandbox.comfy.core import ComfyCore
from comfyfleet.sandbox.comfy.layout import SafetensorsError, read_safetensors_header

_FORCED_DOWNLOAD = {
    "text/html",
    "text/html-sandboxed",
    "application/xhtml+xml",
    "text/javascript",
    "text/css",
}


def _same_bytes(path: Path, data: bytes) -> bool:
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def _upload(core: ComfyCore, post: Any, save: Any = None) -> web.Response:
    """ComfyUI's `image_upload`: dedupe by content, ` (n)` renames, overwrite, subfolders."""
    image = post.get("image")
    if not isinstance(image, web.FileField):
        return web.Response(status=400)
    type_name = post.get("type") or "input"
    upload_dir = core.layout.dir_by_type(type_name)
    if upload_dir is None:
        raise web.HTTPInternalServerError(
            text="500 Internal Server Error\n\nServer got itself in trouble"
        )
    filename = image.filename
    if not filename:
        return web.Response(status=400)
    subfolder = post.get("subfolder", "")
    folder = os.path.join(upload_dir, os.path.normpath(subfolder))
    filepath = os.path.abspath(os.path.join(folder, filename))
    if os.path.commonpath((str(upload_dir), filepath)) != str(upload_dir):
        return web.Response(status=400)
    os.makedirs(folder, exist_ok=True)
    data = image.file.read()
    stem, ext = os.path.splitext(filename)
    overwrite = post.get("overwrite")
    duplicate = False
    if overwrite not in ("true", "1"):
        n = 1
        while os.path.exists(filepath):
            if _same_bytes(Path(filepath), data):
                duplicate = True
                break
            filename = f"{stem} ({n}){ext}"
            filepath = os.path.join(folder, filename)
            n += 1
    if not duplicate:
        if save is not None:
            save(data, Path(filepath))
        else:
            Path(filepath).write_bytes(data)
    return web.json_response({"name": filename, "subfolder": subfolder, "type": type_name})


def add_file_routes(routes: web.RouteTableDef, core: ComfyCore) -> None:
    layout = core.layout

    @routes.post("/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        return _upload(core, await request.post())

    @routes.post("/upload/mask")
    async def upload_mask(request: web.Request) -> web.Response:
        post = await request.post()

        def save(data: bytes, target: Path) -> None:
            ref = json.loads(str(post.get("original_ref")))
            name, base = layout.annotated(str(ref.get("filename", "")))
            if not name or name.startswith("/") or ".." in name:
                return
            base = base or layout.dir_by_type(ref.get("type", "output"))
            if base is None:
                return
            if ref.get("subfolder", ""):
                full = os.path.join(base, ref["subfolder"])
                if os.path.commonpath((os.path.abspath(full), str(base))) != str(base):
                    return
                base = Path(full)
            original = base / name
            if original.is_file():
                with Image.open(original) as pil:
                    meta = PngInfo()
                    for key, value in getattr(pil, "text", {}).items():
                        meta.add_text(key, value)
                    rgba = pil.convert("RGBA")
                    rgba.putalpha(Image.open(BytesIO(data)).convert("RGBA").getchannel("A"))
                    rgba.save(target, compress_level=4, pnginfo=meta)

        return _upload(core, post, save)

    @routes.get("/view")
    async def view(request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, output_dir = layout.annotated(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = layout.dir_by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full), str(output_dir))) != str(output_dir):
                return web.Response(status=403)
            output_dir = Path(full)
        filename = os.path.basename(filename)
        file = output_dir / filename
        if not file.is_file():
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        if "preview" in query:
            return _preview(file, query, disposition)
        channel = query.get("channel", "rgba")
        if channel in ("rgb", "a"):
            return web.Response(
                body=_channel(file, channel), content_type="image/png", headers=disposition
            )
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in _FORCED_DOWNLOAD:
            content_type = "application/octet-stream"
        return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})

    @routes.get("/view_metadata/{folder_name}")
    async def view_metadata(request: web.Request) -> web.Response:
        filename = request.rel_url.query.get("filename")
        if filename is None or not filename.endswith(".safetensors"):
            return web.Response(status=404)
        path = layout.full_path(request.match_info["folder_name"], filename)
        if path is None:
            return web.Response(status=404)
        try:
            header = read_safetensors_header(path, max_size=1024 * 1024)
        except SafetensorsError:
            return web.Response(status=404)
        if "__metadata__" not in header:
            return web.Response(status=404)
        return web.json_response(header["__metadata__"])

    @routes.get("/experiment/models")
    async def experiment_models(request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"name": name, "folders": [str(p) for p in layout.folder_paths(name)]}
                for name in layout.folder_names()
                if name not in ("configs", "custom_nodes")
            ]
        )

    @routes.get("/experiment/models/{folder}")
    async def experiment_models_in(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in layout.folder_names():
            return web.Response(status=404)
        return web.json_response(layout.model_entries(folder))

    @routes.get("/experiment/models/preview/{folder}/{path_index}/{filename:.*}")
    async def model_preview(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in layout.folder_names():
            return web.Response(status=404)
        try:
            base = layout.folder_paths(folder)[int(request.match_info["path_index"])]
        except (ValueError, IndexError):
            return web.Response(status=404)
        stem = os.path.splitext(base / request.match_info["filename"])[0]
        for candidate in (
            f"{stem}.png",
            f"{stem}.jpg",
            f"{stem}.jpeg",
            f"{stem}.webp",
            f"{stem}.preview.png",
        ):
            if os.path.isfile(candidate):
                buf = BytesIO()
                with Image.open(candidate) as img:
                    img.save(buf, format="WEBP")
                return web.Response(body=buf.getvalue(), content_type="image/webp")
        return web.Response(status=404)


def _preview(file: Path, query: Any, headers: dict[str, str]) -> web.Response:
    info = query["preview"].split(";")
    image_format = info[0]
    if image_format not in ("webp", "jpeg") or "a" in query.get("channel", ""):
        image_format = "webp"
    quality = int(info[-1]) if info[-1].isdigit() else 90
    buf = BytesIO()
    with Image.open(file) as img:
        out = (
            img.convert("RGB")
            if image_format == "jpeg" or query.get("channel", "") == "rgb"
            else img
        )
        out.save(buf, format=image_format, quality=quality)
    return web.Response(body=buf.getvalue(), content_type=f"image/{image_format}", headers=headers)


def _channel(file: Path, channel: str) -> bytes:
    buf = BytesIO()
    with Image.open(file) as img:
        if channel == "rgb":
            out = Image.merge("RGB", img.split()[:3]) if img.mode == "RGBA" else img.convert("RGB")
        else:
            alpha = img.split()[3] if img.mode == "RGBA" else Image.new("L", img.size, 255)
            out = Image.new("RGBA", img.size)
            out.putalpha(alpha)
        out.save(buf, format="PNG")
    return buf.getvalue()


def internal_app(core: ComfyCore) -> web.Application:
    """The /internal sub-app (not duplicated under /api)."""
    routes = web.RouteTableDef()

    @routes.get("/logs")
    async def logs(request: web.Request) -> web.Response:
        return web.json_response("".join(e["t"] + " - " + e["m"] for e in core.book.snapshot()))

    @routes.get("/logs/raw")
    async def logs_raw(request: web.Request) -> web.Response:
        size = shutil.get_terminal_size((80, 24))
        return web.json_response(
            {"entries": core.book.snapshot(), "size": {"cols": size.columns, "rows": size.lines}}
        )

    @routes.patch("/logs/subscribe")
    async def subscribe(request: web.Request) -> web.Response:
        await request.json()
        return web.Response(status=200)

    @routes.get("/folder_paths")
    async def folder_paths(request: web.Request) -> web.Response:
        return web.json_response(
            {n: [str(p) for p in core.layout.folder_paths(n)] for n in core.layout.folder_names()}
        )

    @routes.get("/files/{directory_type}")
    async def files(request: web.Request) -> web.Response:
        kind = request.match_info["directory_type"]
        directory = core.layout.dir_by_type(kind)
        if directory is None:
            return web.json_response({"error": "Invalid directory type"}, status=400)
        entries = sorted(
            (e for e in os.scandir(directory) if e.is_file()), key=lambda e: -e.stat().st_mtime
        )
        return web.json_response([e.name for e in entries])

    app = web.Application()
    app.add_routes(routes)
    return app
