"""The cloud with real host processes: SSH with API-registered keys, the token proxy, cleanup."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyfleet.sandbox.vast import pids
from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.process import start_detached, stop_running
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.util.processes import pid_alive

from .conftest import Api, client_for

pytest.importorskip("comfyfleet.sandbox.host")
asyncssh = pytest.importorskip("asyncssh")

FAST = Durations(scheduling=1.0, loading=5.0, cached_loading=2.0, provisioning=5.0)


def _keypair() -> tuple[Any, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return key, key.export_public_key().decode().strip()


async def _until_running(api: Api, instance_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row = await api.show(instance_id)
        if row["actual_status"] == "running":
            return row
        assert row["actual_status"] in (None, "loading"), row["status_msg"]
        assert time.monotonic() < deadline, f"still {row['actual_status']}: {row['status_msg']}"
        await asyncio.sleep(0.1)


async def _ssh_whoami(port: int, key: Any) -> str:
    async with asyncssh.connect(
        "127.0.0.1", port, username="root", client_keys=[key], known_hosts=None
    ) as conn:
        result = await conn.run("echo $CONTAINER_ID", check=True)
        return str(result.stdout).strip()


async def test_ssh_takes_only_registered_keys_and_the_proxy_wants_the_token() -> None:
    mine, mine_public = _keypair()
    stranger, _ = _keypair()
    cloud = SandboxVast(speed=50.0, hosts=True, knobs=VastKnobs(FAST))
    async with cloud, client_for(cloud) as client:
        api = Api(cloud, client, cloud.clock)
        await api.post("/api/v0/ssh/", json={"ssh_key": mine_public})
        new_id = await api.rent(
            env={"-p 8188:8188": "1", "WEB_PASSWORD": "let-me-in"}, runtype="ssh_direc ssh_proxy"
        )
        row = await _until_running(api, new_id)
        ssh_port = int(row["ports"]["22/tcp"][0]["HostPort"])
        proxy_port = int(row["ports"]["8188/tcp"][0]["HostPort"])

        assert await _ssh_whoami(ssh_port, mine) == str(new_id)
        with pytest.raises(asyncssh.PermissionDenied):
            await _ssh_whoami(ssh_port, stranger)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy_port}") as web:
            assert (await web.get("/api/system_stats")).status_code == 401
            deadline = time.monotonic() + 60
            while True:  # ComfyUI answers once the host's provisioning is over
                r = await web.get("/api/system_stats", params={"token": "let-me-in"})
                if r.status_code == 200:
                    break
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.2)
            assert "comfyui_version" in r.json()["system"]

        host_pid = (await api.get("/__sandbox/state")).json()["instances"][0]["host_pid"]
        assert pids.is_ours(host_pid, "comfyfleet.sandbox.host")
        await api.manage(new_id, state="stopped")
        assert pids.wait_gone(host_pid, 30)


def test_sandbox_stop_takes_its_hosts_with_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    running = start_detached(state, speed=50.0)
    try:
        headers = {"Authorization": f"Bearer {running.api_key}"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=30) as client:
            client.post("/__sandbox/knobs", json={"durations": {"loading": 5, "scheduling": 1}})
            offer = client.post("/api/v0/bundles/", json={"limit": 1}).json()["offers"][0]
            client.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "disk": 10})
            deadline = time.monotonic() + 60
            while True:
                state_now = client.get("/__sandbox/state").json()
                host_pid = state_now["instances"][0]["host_pid"]
                if host_pid:
                    break
                assert time.monotonic() < deadline, json.dumps(state_now)
                time.sleep(0.1)
        assert pids.is_ours(host_pid, "comfyfleet.sandbox.host")
    finally:
        stop_running(state)
    assert not pid_alive(running.pid)
    assert pids.wait_gone(host_pid, 10)
