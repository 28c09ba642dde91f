"""A host's ComfyUI: provisioning gate, token proxy, supervisorctl, nvidia-smi, log."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from tests.sandbox_host.hostkit import TOKEN, RunningHost, launch, pid_exists, wait_gone

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Iterator[RunningHost]:
    # 300 simulated seconds of provisioning = 3 real seconds at the tests' speed.
    running = launch(
        tmp_path_factory.mktemp("host"), wheel_cache, provisioning_seconds=300, num_gpus=2
    )
    try:
        yield running
    finally:
        running.process.stop()


async def run(host: RunningHost, command: str) -> tuple[int, str, str]:
    async with await host.connect() as conn:
        result = await conn.run(command)
    return int(result.exit_status or 0), str(result.stdout), str(result.stderr)


async def test_comfy_waits_for_provisioning(host: RunningHost) -> None:
    status = host.process.status()
    assert status["provisioning"] is True
    assert (host.root / ".provisioning").exists()
    resp = httpx.get(host.proxy_url("/system_stats"), headers=BEARER)
    assert resp.status_code == 502
    code, out, _ = await run(host, "supervisorctl status comfyui")
    assert code == 3 and "waiting for provisioning" in out
    await asyncio.to_thread(host.wait_comfy)
    assert not (host.root / ".provisioning").exists()
    assert (host.root / ".provisioning_complete").exists()
    log = (host.root / "var/log/portal/comfyui.log").read_text()
    assert log.index("startup paused until instance provisioning has completed") < log.index(
        "To see the GUI go to"
    )


@pytest.mark.parametrize(
    ("how", "expect"),
    [
        ("none", 401),
        ("bearer-wrong", 401),
        ("bearer", 200),
        ("query", 200),
        ("cookie", 200),
        ("basic", 200),
        ("basic-wrong-user", 401),
    ],
)
def test_proxy_checks_the_token_like_caddy(host: RunningHost, how: str, expect: int) -> None:
    host.wait_comfy()
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if how == "bearer":
        headers = BEARER
    elif how == "bearer-wrong":
        headers = {"Authorization": "Bearer nope"}
    elif how == "query":
        params = {"token": TOKEN}
    elif how == "cookie":
        cookies = {f"C.{host.spec.instance_id}_auth_token": TOKEN}
    elif how.startswith("basic"):
        user = "vastai" if how == "basic" else "root"
        raw = base64.b64encode(f"{user}:{TOKEN}".encode()).decode()
        headers = {"Authorization": f"Basic {raw}"}
    resp = httpx.get(
        host.proxy_url("/system_stats"), headers=headers, params=params, cookies=cookies
    )
    assert resp.status_code == expect
    if expect == 200:
        assert resp.json()["system"]["comfyui_version"]
    else:
        assert "system" not in resp.text
    if how == "query":
        assert resp.cookies.get(f"C.{host.spec.instance_id}_auth_token") == TOKEN


def test_proxy_streams_uploads_and_downloads(host: RunningHost) -> None:
    host.wait_comfy()
    png = (host.root / "workspace/ComfyUI/input/example.png").read_bytes()
    resp = httpx.post(
        host.proxy_url("/upload/image"),
        headers=BEARER,
        files={"image": ("via-proxy.png", png, "image/png")},
    )
    assert resp.status_code == 200, resp.text
    assert (host.root / "workspace/ComfyUI/input/via-proxy.png").read_bytes() == png
    view = httpx.get(
        host.proxy_url("/view"),
        headers=BEARER,
        params={"filename": "via-proxy.png", "type": "input"},
    )
    assert view.status_code == 200 and view.content == png


async def test_proxy_carries_the_websocket(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    url = host.proxy_url("/ws?clientId=proxy-test")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 401
        async with session.ws_connect(url, headers=BEARER) as ws:
            first = await asyncio.wait_for(ws.receive_json(), 5)
    assert first["type"] == "status"
    assert first["data"]["sid"] == "proxy-test"


async def test_comfy_runs_with_the_venv_python(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    pid = host.process.status()["comfyui"]["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[0].decode() == str(host.root / "venv/main/bin/python")
    assert argv[1:3] == [b"-m", b"comfyfleet.sandbox.comfy"]


async def test_nvidia_smi_reports_the_gpus_and_comfy(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    comfy_pid = host.process.status()["comfyui"]["pid"]
    query = "nvidia-smi --query-gpu=name,utilization.gpu,memory.used,memory.total,temperature.gpu"
    code, out, _ = await run(host, f"{query} --format=csv,noheader,nounits")
    assert code == 0
    rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines()]
    assert [r[0] for r in rows] == ["NVIDIA GeForce RTX 3090"] * 2
    for _name, util, used, total, temp in rows:
        assert 0 <= int(util) <= 100 and 0 < int(used) < int(total) == 24576 and int(temp) > 0
    assert int(rows[0][2]) > int(rows[1][2])  # ComfyUI's memory is on GPU 0
    apps = "nvidia-smi --query-compute-apps=pid,process_name,used_memory"
    code, out, _ = await run(host, f"{apps} --format=csv,noheader,nounits")
    pid, name, used = (cell.strip() for cell in out.strip().split(","))
    assert (int(pid), name) == (comfy_pid, str(host.root / "venv/main/bin/python"))
    assert int(used) > 0
    code, out, _ = await run(host, "nvidia-smi")
    assert code == 0 and "NVIDIA GeForce RTX 3090" in out and str(comfy_pid) in out
    code, out, _ = await run(host, "nvidia-smi --query-gpu=bogus --format=csv")
    assert code == 2 and 'Field "bogus" is not a valid field to query.' in out


async def test_supervisorctl_restart_gives_a_new_comfy(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    old_pid = host.process.status()["comfyui"]["pid"]
    log = host.root / "var/log/portal/comfyui.log"
    code, out, _ = await run(host, "supervisorctl restart comfyui")
    assert (code, out) == (0, "comfyui: stopped\ncomfyui: started\n")
    assert not pid_exists(old_pid)
    new_pid = host.process.status()["comfyui"]["pid"]
    assert new_pid not in (None, old_pid)
    assert "To see the GUI go to" in log.with_name("comfyui.log.old").read_text()
    await asyncio.to_thread(host.wait_comfy)
    assert "To see the GUI go to" in log.read_text()
    code, out, _ = await run(host, "supervisorctl status comfyui")
    assert code == 0 and out.startswith("comfyui") and f"RUNNING   pid {new_pid}," in out


async def test_a_crashed_comfy_is_restarted(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    old_pid = host.process.status()["comfyui"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    await asyncio.to_thread(wait_gone, old_pid)
    await asyncio.to_thread(host.wait_comfy)
    status = host.process.status()["comfyui"]
    assert status["state"] == "RUNNING" and status["pid"] not in (None, old_pid)


async def test_supervisorctl_stop_and_start(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    code, out, _ = await run(host, "supervisorctl stop comfyui; supervisorctl status comfyui")
    assert out.splitlines()[0] == "comfyui: stopped"
    assert "STOPPED" in out.splitlines()[1] and code == 3
    assert httpx.get(host.proxy_url("/system_stats"), headers=BEARER).status_code == 502
    code, out, _ = await run(host, "supervisorctl start comfyui; supervisorctl start comfyui")
    assert out == "comfyui: started\ncomfyui: ERROR (already started)\n" and code == 1
    await asyncio.to_thread(host.wait_comfy)
    code, out, _ = await run(host, "supervisorctl tail comfyui")
    assert "To see the GUI go to" in out
    code, out, _ = await run(host, "supervisorctl restart nosuch")
    assert (code, out) == (1, "nosuch: ERROR (no such process)\n")


async def test_status_json_matches_the_endpoints(host: RunningHost) -> None:
    status = host.process.status()
    assert status["ssh_port"] == host.process.ssh_port
    assert status["proxy_port"] == host.process.proxy_port
    endpoints = json.loads((host.root / ".sandbox-host.json").read_text())
    assert endpoints["pid"] == host.process.pid == status["pid"]
