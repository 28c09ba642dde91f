"""The Vast client against the simulated cloud over loopback HTTP: the whole lifecycle.

The cloud runs on a hand-moved clock; the client's waits (retries, log polls) move that same
clock, so rate limits and phases see one simulated time and nothing sleeps for real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from vast_helpers import AdvancingClock

from comfyfleet.errors import (
    OfferUnavailable,
    VastAuthError,
    VastCreateFailed,
    VastQuotaExceeded,
    VastRateLimited,
    VastServerError,
)
from comfyfleet.models.vast import InstanceStatus
from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.util.clock import ManualClock
from comfyfleet.vast.client import VastClient
from comfyfleet.vast.search import comfy_offer_query

IMAGE = "vastai/comfy:v0.8.2-cuda-12.9-py312"
WEB_PASSWORD = "sandbox-web-password-4242"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host"
QUICK = Durations(scheduling=5.0, loading=60.0, cached_loading=10.0, provisioning=30.0, reboot=10.0)


@dataclass
class World:
    cloud: SandboxVast
    clock: ManualClock
    client_clock: AdvancingClock
    vast: VastClient

    async def rent(self, query: str = "", **kwargs: object) -> int:
        offers = await self.vast.search_offers(comfy_offer_query(query, image=IMAGE, disk_gb=40))
        assert offers, "the sandbox market has no matching offer"
        return await self.create(offers[0].id, **kwargs)

    async def create(self, offer_id: int, **kwargs: object) -> int:
        args: dict[str, object] = {
            "image": IMAGE,
            "disk_gb": 40,
            "env": {"WEB_PASSWORD": WEB_PASSWORD},
            "ports": [22, 8188],
            "onstart": "entrypoint.sh",
            "label": "comfyfleet:manual:test",
            "runtype": "jupyter_direc ssh_direc ssh_proxy",
        }
        args.update(kwargs)
        return await self.vast.create_instance(offer_id, **args)  # type: ignore[arg-type]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    clock = ManualClock(start=1_800_000_000.0)
    cloud = SandboxVast(clock=clock, knobs=VastKnobs(QUICK), seed=11)
    async with cloud:
        client_clock = AdvancingClock(clock)
        async with VastClient(cloud.api_key, base_url=cloud.url, clock=client_clock) as vast:
            yield World(cloud, clock, client_clock, vast)


async def test_search_applies_the_comfy_defaults(world: World) -> None:
    offers = await world.vast.search_offers(comfy_offer_query("", image=IMAGE, disk_gb=40))
    assert offers
    for offer in offers:
        assert offer.num_gpus == 1 and offer.rentable and offer.verification == "verified"
        assert offer.cuda_max_good is not None and offer.cuda_max_good >= 12.9
        assert offer.reliability is not None and offer.reliability > 0.98
        assert offer.inet_down is not None and offer.inet_down >= 200
        assert offer.direct_port_count is not None and offer.direct_port_count >= 4
    scores = [o.score for o in offers]
    assert scores == sorted(scores, reverse=True)
    cheap = await world.vast.search_offers(
        comfy_offer_query("cuda_max_good=any dph<0.3", order="dph", image=IMAGE)
    )
    assert cheap and all(o.dph_total < 0.3 for o in cheap)
    assert [o.dph_total for o in cheap] == sorted(o.dph_total for o in cheap)


async def test_lifecycle(world: World) -> None:
    vast, clock = world.vast, world.clock
    offers = await vast.search_offers(comfy_offer_query("", image=IMAGE, disk_gb=40))
    instance_id = await world.create(offers[0].id)
    with pytest.raises(OfferUnavailable):  # offers are single use
        await world.create(offers[0].id)

    listed = {i.id: i for i in await vast.list_instances()}
    created = listed[instance_id]
    assert created.status is InstanceStatus.CREATING and created.ports == {}
    assert created.label == "comfyfleet:manual:test"
    assert "WEB_PASSWORD" in created.env_keys
    assert WEB_PASSWORD not in created.model_dump_json() + repr(created)

    clock.advance(QUICK.scheduling + 1)
    shown = await vast.show_instance(instance_id)
    assert shown is not None and shown.status is InstanceStatus.LOADING
    clock.advance(QUICK.loading)
    shown = await vast.show_instance(instance_id)
    assert shown is not None and shown.status is InstanceStatus.RUNNING
    assert shown.host_port(8188) and shown.host_port(22) and shown.ssh_endpoint()

    await vast.set_label(instance_id, "comfyfleet:manual:renamed")
    await vast.stop(instance_id)
    clock.advance(5)
    shown = await vast.show_instance(instance_id)
    assert shown is not None and shown.status is InstanceStatus.STOPPED
    assert shown.label == "comfyfleet:manual:renamed"

    await vast.start(instance_id)
    clock.advance(QUICK.cached_loading + 1)
    shown = await vast.show_instance(instance_id)
    assert shown is not None and shown.status is InstanceStatus.RUNNING

    await vast.reboot(instance_id)
    shown = await vast.show_instance(instance_id)
    assert shown is not None and shown.status is InstanceStatus.REBOOTING

    world.cloud.knobs.set_logs_not_ready_polls(2)
    before = len(world.client_clock.sleeps)
    text = await vast.logs(instance_id, tail=100)
    assert "container started" in text
    assert len(world.client_clock.sleeps) - before == 2  # two polls that were not ready yet

    user = await vast.current_user()
    assert 0 < user.credit < world.cloud.credit  # the running time was billed

    assert await vast.destroy(instance_id) is True
    assert await vast.destroy(instance_id) is False  # idempotent
    assert await vast.show_instance(instance_id) is None
    assert instance_id not in {i.id for i in await vast.list_instances()}


async def test_list_pages_through_more_than_25_instances(world: World) -> None:
    offers = await world.vast.search_offers(
        comfy_offer_query(
            "verified=any reliability=any cuda_max_good=any inet_down=any "
            "direct_port_count=any num_gpus=any",
            limit=60,
        )
    )
    assert len(offers) >= 27, "the sandbox market is too small for this test"
    created = {await world.create(offer.id) for offer in offers[:27]}
    listed = await world.vast.list_instances()
    assert {i.id for i in listed} == created and len(listed) == 27


async def test_a_5xx_storm_is_ridden_out(world: World) -> None:
    world.cloud.knobs.fail_next(2, 502)
    assert await world.vast.search_offers(comfy_offer_query("", image=IMAGE))
    assert world.client_clock.sleeps == pytest.approx([0.15, 0.225])
    world.cloud.knobs.fail_next(3, 503)
    with pytest.raises(VastServerError) as info:
        await world.vast.current_user()
    assert info.value.status == 503


async def test_a_create_that_errors_but_leaves_a_contract(world: World) -> None:
    world.cloud.knobs.fail_creates(1, 500)
    with pytest.raises(VastCreateFailed) as info:
        await world.rent()
    error = info.value
    left = {i.id for i in await world.vast.list_instances()}
    if error.created_instance_id is not None:
        assert error.created_instance_id in left
    else:  # the answer named no contract: the outcome is unknown, the label finds it
        assert error.outcome_unknown and left
    for instance_id in left:
        assert await world.vast.destroy(instance_id) is True
    assert await world.vast.list_instances() == []


async def test_an_offer_that_cannot_start(world: World) -> None:
    world.cloud.knobs.make_unavailable(1)
    with pytest.raises(OfferUnavailable) as info:
        await world.rent()
    assert info.value.status == 410
    world.cloud.knobs.make_unavailable(1)
    instance_id = await world.rent(cancel_unavail=False)
    shown = await world.vast.show_instance(instance_id)
    assert shown is not None
    assert shown.status in (InstanceStatus.SCHEDULING, InstanceStatus.STOPPED)


async def test_rate_limits(world: World) -> None:
    world.cloud.knobs.rate_limit("show_instance", 0.3)
    instance_id = await world.rent()
    await world.vast.show_instance(instance_id)
    await world.vast.show_instance(instance_id)  # 0.15 + 0.225 s of backoff clears 0.3 s
    assert world.client_clock.sleeps == pytest.approx([0.15, 0.225])

    world.cloud.knobs.rate_limit("show_instance", 2.0)  # Vast's documented threshold
    world.clock.advance(5)
    await world.vast.show_instance(instance_id)
    with pytest.raises(VastRateLimited) as info:
        await world.vast.show_instance(instance_id)
    assert "too frequent" in info.value.message


async def test_search_quota(world: World) -> None:
    world.cloud.knobs.set_search_quota(1)
    await world.vast.search_offers(comfy_offer_query(""))
    sleeps = len(world.client_clock.sleeps)
    with pytest.raises(VastQuotaExceeded) as info:
        await world.vast.search_offers(comfy_offer_query(""))
    assert info.value.reset_at is not None and info.value.reset_at > world.clock.now()
    assert len(world.client_clock.sleeps) == sleeps  # never retried


async def test_ssh_keys(world: World) -> None:
    added = await world.vast.add_ssh_key(PUBKEY)
    assert added.public_key == PUBKEY
    assert [k.id for k in await world.vast.ssh_keys()] == [added.id]
    instance_id = await world.rent()
    await world.vast.attach_ssh_key(instance_id, PUBKEY)


async def test_a_wrong_key_is_refused(world: World) -> None:
    async with VastClient("f" * 64, base_url=world.cloud.url, clock=world.client_clock) as vast:
        with pytest.raises(VastAuthError) as info:
            await vast.current_user()
    assert "f" * 64 not in str(info.value)
    assert info.value.status == 401
