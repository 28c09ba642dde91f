"""Stand-ins for the catalogs on one loopback port, written from their public docs.

    /manager/<file>                                  ComfyUI-Manager's raw files (ETag, 304)
    /registry/comfy-nodes/<class>/node               Comfy Registry: the Node holding a class
    /registry/nodes/<id>                             Comfy Registry: one Node
    /hf/api/models/<owner>/<repo>                    Hugging Face repo metadata (gated, private)
    /civitai/api/v1/model-versions/by-hash/<sha256>  Civitai: the version holding a file
    /civitai/api/v1/models/<id>                      Civitai: a model, newest version first

Knobs: `files` (name -> bytes, default the shared fixtures), `failing` (paths answered 500),
`registry_classes` / `registry_nodes` / `hf_repos` / `civitai_hashes` / `civitai_models`.
`requests` records (path, headers) of every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

MANAGER_FILES = ("extension-node-map.json", "custom-node-list.json", "model-list.json")


@dataclass
class Standin:
    fixtures: Path
    files: dict[str, bytes] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    registry_classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    registry_nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    hf_repos: dict[str, Any] = field(default_factory=dict)  # repo -> body, or 401
    civitai_hashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    civitai_models: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        for name in MANAGER_FILES:
            self.files.setdefault(name, (self.fixtures / name).read_bytes())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, cache_dir: Path) -> dict[str, str]:
        """COMFYFLEET_CATALOG__* variables pointing every catalog here."""
        return {
            "COMFYFLEET_CATALOG__NODE_MAP_URL": f"{self.url}/manager/extension-node-map.json",
            "COMFYFLEET_CATALOG__NODE_LIST_URL": f"{self.url}/manager/custom-node-list.json",
            "COMFYFLEET_CATALOG__MODEL_LIST_URL": f"{self.url}/manager/model-list.json",
            "COMFYFLEET_CATALOG__REGISTRY_URL": f"{self.url}/registry",
            "COMFYFLEET_CATALOG__HUGGINGFACE_URL": f"{self.url}/hf",
            "COMFYFLEET_CATALOG__CIVITAI_URL": f"{self.url}/civitai",
            "COMFYFLEET_CATALOG__CACHE_DIR": str(cache_dir),
            "COMFYFLEET_CATALOG__OFFLINE": "0",
        }

    def hits(self, prefix: str) -> int:
        return sum(1 for path, _ in self.requests if path.startswith(prefix))

    # --- routes --------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers)))
        if request.path in self.failing:
            return web.json_response({"error": "boom"}, status=500)
        response: web.StreamResponse = await handler(request)
        return response

    async def _manager(self, request: web.Request) -> web.Response:
        body = self.files.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    async def _registry_class(self, request: web.Request) -> web.Response:
        node = self.registry_classes.get(request.match_info["name"])
        if node is None:
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response(node)

    async def _registry_node(self, request: web.Request) -> web.Response:
        node = self.registry_nodes.get(request.match_info["id"])
        if node is None:
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response(node)

    async def _hf_repo(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        body = self.hf_repos.get(repo)
        if body is None:
            return web.json_response({"error": "Repository not found"}, status=404)
        if body == 401:
            return web.json_response({"error": "Invalid credentials"}, status=401)
        return web.json_response({"id": repo, "siblings": [{"rfilename": "x"}] * 50, **body})

    async def _civitai_hash(self, request: web.Request) -> web.Response:
        body = self.civitai_hashes.get(request.match_info["sha"].lower())
        if body is None:
            return web.json_response({"error": "Model not found"}, status=404)
        return web.json_response(body)

    async def _civitai_model(self, request: web.Request) -> web.Response:
        body = self.civitai_models.get(int(request.match_info["id"]))
        if body is None:
            return web.json_response({"error": "No model"}, status=404)
        return web.json_response(body)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/manager/{name}", self._manager)
        app.router.add_get("/registry/comfy-nodes/{name}/node", self._registry_class)
        app.router.add_get("/registry/nodes/{id}", self._registry_node)
        app.router.add_get("/hf/api/models/{owner}/{repo}", self._hf_repo)
        app.router.add_get("/civitai/api/v1/model-versions/by-hash/{sha}", self._civitai_hash)
        app.router.add_get("/civitai/api/v1/models/{id}", self._civitai_model)
        return app

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Standin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ThreadedStandin:
    """A Standin served from a background thread (for tests that run the CLI)."""

    def __init__(self, standin: Standin) -> None:
        self.standin = standin
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the catalog stand-in did not start"

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        await self.standin.start()
        self._ready.set()
        await self._done.wait()
        await self.standin.stop()

    def stop(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(timeout=10)


def registry_node(
    node_id: str, repo: str, name: str = "", version: str = "1.0.0"
) -> dict[str, Any]:
    """A Node as the registry returns it (the fields its OpenAPI description lists)."""
    return {
        "id": node_id,
        "name": name or node_id,
        "repository": repo,
        "description": f"{node_id} nodes",
        "publisher": {"id": "pub", "name": "Publisher"},
        "latest_version": {"version": version, "node_id": node_id},
        "downloads": 10,
        "status": "NodeStatusActive",
    }
