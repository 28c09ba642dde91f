"""The cloud's state survives a restart; simulated time continues from where it stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyfleet.errors import SandboxError
from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.process import load_or_create_api_key
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.util.clock import ManualClock

from .conftest import QUICK, Api, client_for

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBlcnNpc3Q= keep@me"


async def test_everything_survives_a_restart(state_dir: Path) -> None:
    clock = ManualClock(start=1_800_000_000.0)
    cloud = SandboxVast(state_dir, clock=clock, knobs=VastKnobs(QUICK), seed=3)
    async with cloud, client_for(cloud) as client:
        api = Api(cloud, client, clock)
        await api.post("/api/v0/ssh/", json={"ssh_key": KEY})
        running = await api.rent(label="keep")
        stopped = await api.rent("RTX 3090")
        await api.advance(65)
        await api.manage(stopped, state="stopped")
        used_offer = await api.offer(gpu_name="RTX 5090")
        creating = await api.create(used_offer["id"])
        await api.advance(3)
        before = {i: await api.show(i) for i in (running, stopped, creating)}
        credit = await api.credit()
        offers = sorted(o["id"] for o in await api.search())
        now = (await api.get("/__sandbox/info")).json()["now"]
        key = cloud.api_key

    clock = ManualClock(start=now)
    cloud = SandboxVast(state_dir, clock=clock, knobs=VastKnobs(QUICK), seed=999)
    async with cloud, client_for(cloud) as client:
        api = Api(cloud, client, clock)
        assert cloud.api_key == key
        after = {i: await api.show(i) for i in before}
        assert after == before
        assert await api.credit() == credit
        assert sorted(o["id"] for o in await api.search()) == offers  # same market, not seed 999
        assert [k["key"] for k in (await api.get("/api/v0/ssh/")).json()] == [KEY]
        r = await api.put(f"/api/v0/asks/{used_offer['id']}/", json={"image": "x"})
        assert r.status_code == 404
        before_credit = await api.credit()
        await api.advance(2)  # the creating instance picks up where it was
        assert (await api.show(creating))["actual_status"] == "loading"
        await api.advance(3600 - 2)
        assert (await api.show(creating))["actual_status"] == "running"
        # Billing resumed exactly: "creating" paid storage for 2 + 60 s, then its full rate.
        run, stop, new = after[running], after[stopped], after[creating]
        expected = (
            run["dph_total"]
            + stop["storage_total_cost"]
            + new["storage_total_cost"] * 62 / 3600
            + new["dph_total"] * (3600 - 62) / 3600
        )
        assert before_credit - await api.credit() == pytest.approx(expected, abs=1e-5)
        newer = await api.rent("RTX 3090")
        assert newer > creating


async def test_the_default_clock_resumes_from_the_saved_time(state_dir: Path) -> None:
    future = 1_900_000_000.0  # far from the real time, so the two cannot be confused
    async with SandboxVast(state_dir, clock=ManualClock(start=future)) as cloud:
        pass
    async with SandboxVast(state_dir, speed=10.0) as cloud, client_for(cloud) as client:
        info = (await client.get("/__sandbox/info")).json()
        assert future <= info["now"] < future + 60
        assert info["speed"] == 10.0


def test_the_api_key_is_generated_once_and_private(state_dir: Path) -> None:
    key = load_or_create_api_key(state_dir)
    assert len(key) == 64 and load_or_create_api_key(state_dir) == key
    assert (state_dir / "api_key").stat().st_mode & 0o777 == 0o600


async def test_a_broken_state_file_is_reported(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "cloud.json").write_text("{broken")
    with pytest.raises(SandboxError, match="cloud state"):
        await SandboxVast(state_dir).start()
