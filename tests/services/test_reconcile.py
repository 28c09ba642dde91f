"""Reconcile: adopt what we track, reap what we don't, never touch others' instances."""

from __future__ import annotations

import os
import subprocess
import sys

from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.reconcile import owner_fields, reconcile
from comfyfleet.state import IntentStatus
from comfyfleet.state.rows import vast_label

IMAGE = "vastai/comfy:v0.8.2-cuda-12.9-py312"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def _offer_id(cloud: Cloud) -> int:
    offers = await cloud.vast.search_offers(
        {"rentable": {"eq": True}, "order": [["dph_total", "asc"]]}
    )
    return offers[0].id


async def _create_with_intent(cloud: Cloud, *, owner: dict[str, object], complete: bool) -> int:
    intent = cloud.db.intents.record(pool="manual", offer=None, request=owner, name=None)
    vast_id = await cloud.vast.create_instance(
        await _offer_id(cloud), image=IMAGE, disk_gb=20, label=vast_label(intent.label, "box")
    )
    if complete:
        cloud.db.intents.complete(intent.id, vast_id)
    return vast_id


async def _billing_untracked(cloud: Cloud) -> list[int]:
    live = {r.vast_id for r in cloud.db.instances.live()}
    return [i.id for i in await cloud.vast.list_instances() if i.id not in live]


async def test_create_that_never_completed_is_reaped(cloud: Cloud) -> None:
    vast_id = await _create_with_intent(
        cloud, owner={"owner_pid": dead_pid(), "owner_host": os.uname().nodename}, complete=False
    )
    actions = await reconcile(cloud)
    assert [(a.kind, a.vast_id) for a in actions] == [("reaped", vast_id)]
    assert await cloud.vast.show_instance(vast_id) is None
    row = cloud.db.instances.by_vast_id(vast_id)
    assert row is not None and not row.live
    intent = cloud.db.intents.by_label(row.label)
    assert intent is not None and intent.status is IntentStatus.CLEANED
    assert await _billing_untracked(cloud) == []


async def test_create_in_flight_in_a_live_process_is_left_alone(cloud: Cloud) -> None:
    vast_id = await _create_with_intent(cloud, owner=owner_fields(), complete=False)
    assert await reconcile(cloud) == []
    assert await cloud.vast.show_instance(vast_id) is not None


async def test_completed_create_is_adopted_and_tracked(cloud: Cloud) -> None:
    vast_id = await _create_with_intent(cloud, owner=owner_fields(), complete=True)
    row = cloud.db.instances.by_vast_id(vast_id)
    assert row is not None
    cloud.db.instances.mark_destroyed(row.id, reason="lost track by mistake")
    actions = await reconcile(cloud)
    assert [(a.kind, a.vast_id) for a in actions] == [("adopted", vast_id)]
    row = cloud.db.instances.by_vast_id(vast_id)
    assert row is not None and row.live
    assert await _billing_untracked(cloud) == []


async def test_instance_gone_from_vast_is_marked_destroyed(cloud: Cloud) -> None:
    vast_id = await _create_with_intent(cloud, owner=owner_fields(), complete=True)
    await reconcile(cloud)
    await cloud.vast.destroy(vast_id)
    actions = await reconcile(cloud)
    assert [(a.kind, a.vast_id) for a in actions] == [("gone", vast_id)]
    row = cloud.db.instances.by_vast_id(vast_id)
    assert row is not None and not row.live


async def test_intent_that_never_reached_vast_is_abandoned(cloud: Cloud) -> None:
    request = {"owner_pid": dead_pid(), "owner_host": os.uname().nodename}
    intent = cloud.db.intents.record(pool="manual", offer=None, request=request)
    actions = await reconcile(cloud)
    assert [a.kind for a in actions] == ["abandoned"]
    assert cloud.db.intents.get(intent.id).status is IntentStatus.CLEANED
    assert cloud.db.instances.live() == []


async def test_foreign_and_untagged_instances_are_never_touched(
    cloud: Cloud, sky: SandboxVast
) -> None:
    mine_elsewhere = await cloud.vast.create_instance(
        await _offer_id(cloud),
        image=IMAGE,
        disk_gb=20,
        label="comfyfleet:manual:00000000-0000-4000-8000-000000000000",
    )
    plain = await cloud.vast.create_instance(
        await _offer_id(cloud), image=IMAGE, disk_gb=20, label="my own box"
    )
    actions = await reconcile(cloud)
    assert [(a.kind, a.vast_id) for a in actions] == [("foreign", mine_elsewhere)]
    assert await cloud.vast.show_instance(mine_elsewhere) is not None
    assert await cloud.vast.show_instance(plain) is not None
