"""A loopback model file server for sandbox instances: plain files, Hugging Face and Civitai.

It extends the catalog stand-ins (`tests/catalog/standins.py`: ComfyUI-Manager's lists, the
hubs' metadata APIs) with the download routes, written from the hubs' public behaviour:

    /files/<name>                                   a plain URL (optionally behind a token)
    /hf/<owner>/<repo>/resolve/<rev>/<path>         302 to /cdn/..., with X-Linked-Etag (the
                                                    file's sha256) and X-Linked-Size, as
                                                    Hugging Face answers for LFS files;
                                                    gated repos: 401 without the token
    /civitai/api/download/models/<version>          307 to /cdn/...; 401 without the token
    /civitai/api/v1/model-versions/<version>        the version's model type and files
    /cdn/<key>                                      the bytes (no auth, as signed CDN URLs)

Every download answers Range requests (206) and HEAD. Knobs per file name: `cut_once` sends
half the bytes then drops the connection (once), `stall` sends half then waits for its
event, `wrong` serves other bytes than announced, `huge` announces a size no disk has,
`head_refused` makes /cdn answer HEAD with 403 (signed URLs are signed for GET only).
`hits` records (method, path, Range, Authorization) of every download request.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from tests.catalog.standins import Standin

HUGE = 10**18


@dataclass
class Hit:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class ModelServer(Standin):
    blobs: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes
    hf: dict[str, str] = field(default_factory=dict)  # "owner/repo/path" -> blob name
    hf_gated: dict[str, str] = field(default_factory=dict)  # "owner/repo" -> token it takes
    civitai: dict[int, dict[str, Any]] = field(default_factory=dict)  # version -> body
    civitai_token: str = ""
    file_token: dict[str, str] = field(default_factory=dict)  # blob name -> token for /files
    cut_once: set[str] = field(default_factory=set)
    stall: dict[str, asyncio.Event] = field(default_factory=dict)
    stalled: dict[str, asyncio.Event] = field(default_factory=dict)  # set once it stalls
    wrong: set[str] = field(default_factory=set)
    huge: set[str] = field(default_factory=set)
    head_refused: set[str] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)

    def sha(self, name: str) -> str:
        return hashlib.sha256(self.blobs[name]).hexdigest()

    def gets(self, name: str) -> list[Hit]:
        """GET requests that served (or tried to serve) the bytes of `name`."""
        return [h for h in self.hits if h.method == "GET" and h.path.endswith("/" + name)]

    def add_civitai(
        self, version: int, name: str, *, model: int = 1, model_type: str = "LORA"
    ) -> None:
        self.civitai[version] = {
            "id": version,
            "modelId": model,
            "model": {"name": f"model {model}", "type": model_type},
            "files": [
                {"name": "training.zip", "type": "Training Data", "primary": False, "hashes": {}},
                {
                    "name": name,
                    "type": "Model",
                    "primary": True,
                    "hashes": {"SHA256": self.sha(name).upper()},
                },
            ],
        }

    # --- routes --------------------------------------------------------------------------

    def _hit(self, request: web.Request) -> None:
        self.hits.append(
            Hit(
                request.method,
                request.path,
                request.headers.get("Range"),
                request.headers.get("Authorization"),
            )
        )

    async def _serve(self, request: web.Request, name: str) -> web.StreamResponse:
        body = self.blobs.get(name)
        if body is None:
            raise web.HTTPNotFound()
        if name in self.wrong:
            body = bytes(b ^ 0x5A for b in body)
        total = HUGE if name in self.huge else len(body)
        start, end = 0, total - 1
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged[6:].partition("-")
            start, end = int(first), min(int(last) if last else end, end)
            if start >= len(body):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
        headers = {"Content-Length": str(end - start + 1), "Accept-Ranges": "bytes"}
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        response = web.StreamResponse(status=206 if ranged else 200, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        rest = body[start : end + 1]
        half = len(rest) // 2
        if name in self.cut_once or name in self.stall:
            await response.write(rest[:half])
            if name in self.cut_once:
                self.cut_once.discard(name)
                assert request.transport is not None
                request.transport.close()
                return response
            self.stalled.setdefault(name, asyncio.Event()).set()
            await self.stall.pop(name).wait()
            rest = rest[half:]
        await response.write(rest)
        await response.write_eof()
        return response

    def _bearer(self, request: web.Request, token: str) -> bool:
        return bool(token) and request.headers.get("Authorization") == f"Bearer {token}"

    async def _file(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        name = request.match_info["name"]
        token = self.file_token.get(name)
        if token and not self._bearer(request, token):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await self._serve(request, name)

    async def _hf_resolve(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        name = self.hf.get(f"{repo}/{request.match_info['path']}")
        if name is None:
            return web.json_response({"error": "Entry not found"}, status=404)
        token = self.hf_gated.get(repo)
        if token is not None and not self._bearer(request, token):
            return web.json_response({"error": "Access to model is restricted"}, status=401)
        headers = {
            "Location": f"/cdn/{name}",
            "X-Linked-Etag": f'"{self.sha(name)}"',
            "X-Linked-Size": str(len(self.blobs[name])),
        }
        return web.Response(status=302, headers=headers)

    async def _civitai_download(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        if not self._bearer(request, self.civitai_token):
            return web.json_response({"error": "Unauthorized"}, status=401)
        version = self.civitai.get(int(request.match_info["version"]))
        if version is None:
            return web.json_response({"error": "Model not found"}, status=404)
        primary = next(f for f in version["files"] if f["primary"])
        return web.Response(status=307, headers={"Location": f"/cdn/{primary['name']}"})

    async def _civitai_version(self, request: web.Request) -> web.Response:
        body = self.civitai.get(int(request.match_info["version"]))
        if body is None:
            return web.json_response({"error": "No version"}, status=404)
        return web.json_response(body)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        name = request.match_info["name"]
        if request.method == "HEAD" and name in self.head_refused:
            return web.Response(status=403, text="SignatureDoesNotMatch")
        return await self._serve(request, name)

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/hf/{owner}/{repo}/resolve/{rev}/{path:.*}", self._hf_resolve)
        app.router.add_get("/civitai/api/download/models/{version}", self._civitai_download)
        app.router.add_get("/civitai/api/v1/model-versions/{version}", self._civitai_version)
        app.router.add_get("/cdn/{name}", self._cdn)
        return app
