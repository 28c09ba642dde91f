"""The simulated Vast cloud under test: in this test's loop, on a hand-moved or fast clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.util.clock import ManualClock

#: Short phases so a whole lifecycle fits in a few simulated minutes.
QUICK = Durations(scheduling=5.0, loading=60.0, cached_loading=10.0, provisioning=30.0, reboot=10.0)


class Api:
    """An authenticated client of one cloud, plus its clock when the test moves time."""

    def __init__(self, cloud: SandboxVast, client: httpx.AsyncClient, clock: Any) -> None:
        self.cloud = cloud
        self.http = client
        self.clock = clock

    @property
    def knobs(self) -> VastKnobs:
        return self.cloud.knobs

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.get(path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.post(path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.put(path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.request("DELETE", path, **kw)

    async def search(self, **query: Any) -> list[dict[str, Any]]:
        r = await self.post("/api/v0/bundles/", json=query)
        assert r.status_code == 200, r.text
        offers: list[dict[str, Any]] = r.json()["offers"]
        return offers

    async def offer(self, **filters: Any) -> dict[str, Any]:
        query = {k: {"eq": v} for k, v in filters.items()}
        offers = await self.search(**query, order=[["dph_total", "asc"]])
        assert offers, f"no offer matches {filters}"
        return offers[0]

    async def create(self, offer_id: int, **body: Any) -> int:
        body.setdefault("image", "vastai/comfy:v0.8.2-cuda-12.9-py312")
        body.setdefault("disk", 20)
        r = await self.put(f"/api/v0/asks/{offer_id}/", json={"client_id": "me", **body})
        assert r.status_code == 200, r.text
        new_id: int = r.json()["new_contract"]
        return new_id

    async def rent(self, gpu: str = "RTX 4090", **body: Any) -> int:
        return await self.create((await self.offer(gpu_name=gpu))["id"], **body)

    async def show(self, instance_id: int) -> dict[str, Any]:
        r = await self.get(f"/api/v0/instances/{instance_id}/")
        assert r.status_code == 200, r.text
        row: dict[str, Any] = r.json()["instances"]
        return row

    async def manage(self, instance_id: int, **body: Any) -> httpx.Response:
        return await self.put(f"/api/v0/instances/{instance_id}/", json=body)

    async def credit(self) -> float:
        r = await self.get("/api/v0/users/current/")
        assert r.status_code == 200, r.text
        value: float = r.json()["credit"]
        return value

    async def advance(self, seconds: float) -> None:
        """Move the hand clock, then let the cloud catch up (any request does)."""
        self.clock.advance(seconds)
        await self.get("/__sandbox/info")


def client_for(cloud: SandboxVast) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=cloud.url,
        headers={"Authorization": f"Bearer {cloud.api_key}"},
        timeout=30,
    )


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """A cloud on a hand-moved clock (exact billing), no host processes."""
    clock = ManualClock(start=1_800_000_000.0)
    cloud = SandboxVast(clock=clock, knobs=VastKnobs(QUICK), seed=11)
    async with cloud, client_for(cloud) as client:
        yield Api(cloud, client, clock)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "vast-state"
