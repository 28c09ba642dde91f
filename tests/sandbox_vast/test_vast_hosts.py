"""One host per running instance: what it is told, where it is reported, when it stops."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.util.clock import ManualClock

from .conftest import QUICK, Api, client_for
from .standin_hosts import RecordingLauncher

ACCOUNT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFjY291bnQ= me@laptop"
EXTRA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4dHJh other@desk"


class Hosted(Api):
    launcher: RecordingLauncher

    async def until(
        self, instance_id: int, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            row = await self.show(instance_id)
            if check(row):
                return row
            assert time.monotonic() < deadline, f"instance {instance_id} stayed {row}"
            await asyncio.sleep(0.02)

    async def running(self, instance_id: int) -> dict[str, Any]:
        await self.advance(65)
        return await self.until(instance_id, lambda r: r["actual_status"] == "running")


async def _hosted(launcher: RecordingLauncher, state_dir: Path | None = None) -> Any:
    clock = ManualClock(start=1_800_000_000.0)
    return SandboxVast(state_dir, clock=clock, knobs=VastKnobs(QUICK), host_launcher=launcher)


@pytest.fixture
async def hosted() -> AsyncIterator[Hosted]:
    launcher = RecordingLauncher()
    cloud = await _hosted(launcher)
    async with cloud, client_for(cloud) as client:
        api = Hosted(cloud, client, cloud.clock)
        api.launcher = launcher
        yield api
    launcher.close()


def _port(row: dict[str, Any], name: str) -> int:
    return int(row["ports"][name][0]["HostPort"])


async def test_a_running_instance_gets_a_host_with_its_keys_token_and_env(hosted: Hosted) -> None:
    await hosted.post("/api/v0/ssh/", json={"ssh_key": ACCOUNT_KEY})
    new_id = await hosted.rent(
        env={"-p 8188:8188": "1", "WEB_PASSWORD": "s3cret", "OPEN_BUTTON_TOKEN": "1", "X": "y"},
        runtype="ssh_direc ssh_proxy",
    )
    assert hosted.launcher.for_instance(new_id) == []  # no host before the container starts
    row = await hosted.running(new_id)
    (host,) = hosted.launcher.for_instance(new_id)
    request = host.request
    assert request.web_token == "s3cret"
    assert request.env["X"] == "y" and request.env["CONTAINER_ID"] == str(new_id)
    assert request.env["OPEN_BUTTON_TOKEN"] != "1" and len(request.env["OPEN_BUTTON_TOKEN"]) == 64
    assert request.env["PUBLIC_IPADDR"] == "127.0.0.1"
    assert (request.gpu_name, request.num_gpus) == ("RTX 4090", 1)
    assert request.image == "vastai/comfy:v0.8.2-cuda-12.9-py312"
    assert request.provisioning_seconds == QUICK.provisioning and request.speed == 1.0
    assert request.authorized_keys_file.read_text() == ACCOUNT_KEY + "\n"
    assert request.authorized_keys_file.stat().st_mode & 0o777 == 0o600
    assert _port(row, "22/tcp") == host.ssh_port and row["ssh_port"] == host.ssh_port
    assert _port(row, "8188/tcp") == host.proxy_port
    assert row["public_ipaddr"].strip() == "127.0.0.1" and row["ssh_host"] == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", host.ssh_port), timeout=5):
        pass


async def test_the_generated_token_is_used_without_web_password(hosted: Hosted) -> None:
    new_id = await hosted.rent()
    await hosted.running(new_id)
    (host,) = hosted.launcher.for_instance(new_id)
    assert host.request.web_token == host.request.env["OPEN_BUTTON_TOKEN"]


async def test_authorized_keys_follow_account_and_attached_keys(hosted: Hosted) -> None:
    new_id = await hosted.rent()
    await hosted.running(new_id)
    keys_file = hosted.launcher.for_instance(new_id)[0].request.authorized_keys_file
    assert keys_file.read_text() == ""
    await hosted.post("/api/v0/ssh/", json={"ssh_key": ACCOUNT_KEY})
    assert keys_file.read_text() == ACCOUNT_KEY + "\n"
    r = await hosted.post(f"/api/v0/instances/{new_id}/ssh/", json={"ssh_key": EXTRA_KEY})
    assert keys_file.read_text() == f"{ACCOUNT_KEY}\n{EXTRA_KEY}\n"
    await hosted.delete(f"/api/v0/instances/{new_id}/ssh/{r.json()['key']['id']}/")
    assert keys_file.read_text() == ACCOUNT_KEY + "\n"


async def test_stop_start_endpoint_change_and_destroy(hosted: Hosted) -> None:
    new_id = await hosted.rent(runtype="ssh_direc ssh_proxy")
    row = await hosted.running(new_id)
    first = hosted.launcher.for_instance(new_id)[0]
    await hosted.manage(new_id, state="stopped")
    await hosted.until(new_id, lambda r: r["ports"] is None)
    await _eventually(lambda: first.stopped)

    await hosted.manage(new_id, state="running")
    await hosted.advance(10)
    row = await hosted.until(new_id, lambda r: r["actual_status"] == "running")
    second = hosted.launcher.for_instance(new_id)[1]
    assert _port(row, "22/tcp") == second.ssh_port != first.ssh_port

    await hosted.post(f"/__sandbox/instances/{new_id}/change_endpoint")
    row = await hosted.until(new_id, lambda r: _port(r, "22/tcp") != second.ssh_port)
    third = hosted.launcher.for_instance(new_id)[2]
    assert _port(row, "22/tcp") == third.ssh_port and row["actual_status"] == "running"
    await _eventually(lambda: second.stopped)

    folder = third.request.root.parent
    assert folder.is_dir()
    await hosted.delete(f"/api/v0/instances/{new_id}/", json={})
    await _eventually(lambda: third.stopped and not folder.exists())


async def test_ports_a_host_moves_show_up_in_the_api(hosted: Hosted) -> None:
    new_id = await hosted.rent(runtype="ssh_direc ssh_proxy", env={"-p 1111:1111": "1"})
    row = await hosted.running(new_id)
    host = hosted.launcher.for_instance(new_id)[0]
    moved = host.move_ssh()
    row = await hosted.until(new_id, lambda r: _port(r, "22/tcp") == moved)
    assert row["ssh_port"] == moved and row["actual_status"] == "running"
    assert len(hosted.launcher.for_instance(new_id)) == 1  # the same host, not a restart


async def test_a_host_that_fails_to_start_leaves_a_created_container() -> None:
    launcher = RecordingLauncher(fail_with="no space left on device")
    cloud = await _hosted(launcher)
    async with cloud, client_for(cloud) as client:
        api = Hosted(cloud, client, cloud.clock)
        new_id = await api.rent()
        await api.advance(65)
        row = await api.until(new_id, lambda r: r["actual_status"] != "loading")
        assert row["actual_status"] == "created" and row["intended_status"] == "running"
        assert "no space left on device" in row["status_msg"] and "Error" in row["status_msg"]


async def test_a_host_that_dies_shows_an_exited_container(hosted: Hosted) -> None:
    new_id = await hosted.rent()
    await hosted.running(new_id)
    hosted.launcher.for_instance(new_id)[0].die()
    row = await hosted.until(new_id, lambda r: r["actual_status"] == "exited")
    assert row["intended_status"] == "running" and row["ports"] is None


async def test_hosts_start_again_after_a_cloud_restart(state_dir: Path) -> None:
    launcher = RecordingLauncher()
    cloud = await _hosted(launcher, state_dir)
    async with cloud, client_for(cloud) as client:
        api = Hosted(cloud, client, cloud.clock)
        new_id = await api.rent(env={"-p 8188:8188": "1"})
        await api.running(new_id)
        now = (await api.get("/__sandbox/info")).json()["now"]
    assert launcher.for_instance(new_id)[0].stopped  # the cloud stops its hosts on the way out
    cloud = SandboxVast(
        state_dir, clock=ManualClock(start=now), knobs=VastKnobs(QUICK), host_launcher=launcher
    )
    async with cloud, client_for(cloud) as client:
        api = Hosted(cloud, client, cloud.clock)
        row = await api.until(
            new_id, lambda r: r["actual_status"] == "running" and r["ports"] is not None
        )
        assert len(launcher.for_instance(new_id)) == 2
        assert _port(row, "8188/tcp") == launcher.for_instance(new_id)[1].proxy_port
    launcher.close()


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)
