"""`up` against the simulated cloud with real hosts: ready means ComfyUI answers; no leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfyfleet.errors import VastCreateFailed
from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services.cloud import Cloud, CloudConfig, open_cloud
from comfyfleet.services.readiness import NotReady
from comfyfleet.services.up import UpRequest, up
from comfyfleet.state import IntentStatus

from .conftest import QUICK, settings_for


@pytest.fixture
async def hosted(tmp_path: Path) -> AsyncIterator[SandboxVast]:
    async with SandboxVast(tmp_path / "sky", speed=200.0, knobs=VastKnobs(QUICK), hosts=True) as s:
        yield s


@pytest.fixture
async def hcloud(hosted: SandboxVast, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = settings_for(tmp_path, poll_interval=5, ready_timeout=900, max_offers=2)
    config = CloudConfig(
        "sandbox", hosted.url, hosted.api_key, hosted.clock, tmp_path / "d", settings
    )
    async with open_cloud(config) as c:
        yield c


async def _ours(cloud: Cloud) -> list[int]:
    return [i.id for i in await cloud.vast.list_instances()]


async def test_up_waits_for_comfyui_and_records_everything(hcloud: Cloud) -> None:
    lines: list[str] = []
    result = await up(hcloud, UpRequest(order="dph_total", name="studio"), lines.append)
    assert result.row.ready_at is not None and result.row.name == "studio"
    assert result.attempts == 1
    assert any("waiting for" in line for line in lines)
    kinds = [str(e.kind) for e in hcloud.db.instances.events(result.row.id)]
    assert kinds[0] == "created" and "ready" in kinds
    statuses = [e.to_status for e in hcloud.db.instances.events(result.row.id) if e.to_status]
    assert statuses.index("loading") < statuses.index("running")
    intent = hcloud.db.intents.by_label(result.row.label)
    assert intent is not None and intent.status is IntentStatus.COMPLETED
    assert await _ours(hcloud) == [result.instance.id]


@pytest.mark.vast(ready_timeout=300)
async def test_stuck_instance_is_destroyed_and_the_next_offer_tried(
    hcloud: Cloud, hosted: SandboxVast
) -> None:
    hosted.knobs.stick_next(1)
    lines: list[str] = []
    result = await up(hcloud, UpRequest(order="dph_total"), lines.append)
    assert result.attempts == 2
    assert any("destroying it" in line for line in lines)
    assert await _ours(hcloud) == [result.instance.id]
    destroyed = [r for r in hcloud.db.instances.all() if not r.live]
    assert len(destroyed) == 1 and destroyed[0].vast_id != result.instance.id


async def test_create_that_errors_but_leaves_a_contract_is_cleaned_up(
    hcloud: Cloud, hosted: SandboxVast
) -> None:
    hosted.knobs.fail_creates(1, 500)
    with pytest.raises(VastCreateFailed):
        await up(hcloud, UpRequest(order="dph_total"), lambda _line: None)
    assert await _ours(hcloud) == [], "the contract left by the failed create must be destroyed"
    assert hcloud.db.intents.unsettled() == [], "the failed intent is cleaned, not left open"


async def test_no_offers_is_a_clear_error(hcloud: Cloud) -> None:
    with pytest.raises(Exception, match="no offer matches"):
        await up(hcloud, UpRequest(query=["gpu_name=RTX_1080"]), lambda _line: None)


@pytest.mark.vast(ready_timeout=200)
async def test_every_offer_stuck_gives_up_cleanly(hcloud: Cloud, hosted: SandboxVast) -> None:
    hosted.knobs.stick_next(2)
    with pytest.raises(NotReady, match="no instance became ready"):
        await up(hcloud, UpRequest(order="dph_total"), lambda _line: None)
    assert await _ours(hcloud) == []
