"""The sandbox ComfyUI's persisted-queue mode: a queue that survives restarts, until its
database corrupts and hangs it; plus what the GPU shows meanwhile, and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from comfyfleet.sandbox.comfy import Knobs, SandboxComfy
from comfyfleet.sandbox.host.gpus import GpuProcess, GpuState, gpu_model, with_comfy_status

pytestmark = pytest.mark.timeout(60)

# Simulated time runs fast: the blurs take 0.05 simulated seconds each.
SPEED = 50.0
STUCK_FOR = 0.5  # real seconds a hung queue is watched (25 simulated seconds)


def chain(color: int) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


class Api:
    def __init__(self, server: SandboxComfy, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def get(self, path: str) -> Any:
        async with self.session.get(self.server.url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str, body: Any) -> Any:
        async with self.session.post(self.server.url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json(content_type=None)

    async def queue(self, color: int, client_id: str = "tester") -> str:
        body = await self.post("/prompt", {"prompt": chain(color), "client_id": client_id})
        return str(body["prompt_id"])

    async def ids(self) -> tuple[list[str], list[str]]:
        """(running, pending) prompt ids."""
        queue = await self.get("/queue")
        pending = sorted(queue["queue_pending"], key=lambda item: item[0])
        return [i[1] for i in queue["queue_running"]], [i[1] for i in pending]

    async def wait_running(self, prompt_id: str) -> None:
        for _ in range(500):
            if prompt_id in (await self.ids())[0]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{prompt_id} never started")

    async def wait_done(self, prompt_ids: list[str]) -> dict[str, Any]:
        for _ in range(500):
            history = await self.get("/history")
            if all(p in history for p in prompt_ids):
                return dict(history)
            await asyncio.sleep(0.01)
        raise AssertionError(f"{prompt_ids} never all finished")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def queue_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "user").glob("queue.db*"))


def remove_queue_files(root: Path) -> None:
    for path in (root / "user").glob("queue.db*"):
        path.unlink()


def gpu_state(root: Path) -> GpuState:
    """What the host's nvidia-smi shows for a ComfyUI running in this process."""
    comfy = GpuProcess(0, os.getpid(), "/venv/main/bin/python", 1230)
    return with_comfy_status(GpuState(gpu_model("RTX 4090"), 1, 7, [comfy]), root)


async def test_queued_prompts_survive_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    root = tmp_path / "ComfyUI"
    knobs = Knobs()
    knobs.hang("ImageBlur")
    server = SandboxComfy(root, speed=SPEED, knobs=knobs, persisted_queue=True)
    api = Api(server, session)
    async with server:
        first = await api.queue(1, client_id="alice")
        await api.wait_running(first)
        pending = [await api.queue(2), await api.queue(3)]
        assert await api.ids() == ([first], pending)
        assert queue_files(root) == ["queue.db", "queue.db-shm", "queue.db-wal"]
        # Interrupting the hung node changes nothing: it ignores interrupts.
        await api.post("/interrupt", {})
        await asyncio.sleep(0.1)
        assert await api.ids() == ([first], pending)
    knobs.release()
    async with server:
        # The one that was running never finished: it is queued again, with the others.
        history = await api.wait_done([first, *pending])
        assert history[first]["prompt"][3] == {"client_id": "alice"}
        assert all(history[p]["status"]["status_str"] == "success" for p in [first, *pending])
        later = await api.queue(4)
        numbers = {h["prompt"][1]: h["prompt"][0] for h in (await api.wait_done([later])).values()}
        assert numbers[later] > max(numbers[p] for p in [first, *pending])
        assert await api.ids() == ([], [])
    with sqlite3.connect(root / "user" / "queue.db") as db:
        assert db.execute("SELECT COUNT(*) FROM queue").fetchone() == (0,)


async def test_without_the_mode_a_restart_loses_the_queue(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    root = tmp_path / "ComfyUI"
    knobs = Knobs()
    knobs.hang("ImageBlur")
    server = SandboxComfy(root, speed=SPEED, knobs=knobs)
    api = Api(server, session)
    async with server:
        await api.wait_running(await api.queue(1))
        await api.queue(2)
    async with server:
        assert await api.ids() == ([], [])
    assert queue_files(root) == []


async def test_a_corrupt_queue_db_hangs_the_queue_until_removed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    root = tmp_path / "ComfyUI"
    server = SandboxComfy(root, speed=SPEED, persisted_queue=True)
    api = Api(server, session)
    async with server:
        await api.wait_done([await api.queue(1)])
    assets = root / "user" / "comfyui.db"
    assert assets.stat().st_size == 0  # created at start, as ComfyUI does
    before = (assets.read_bytes(), assets.stat().st_mtime_ns)
    (root / "user" / "queue.db").write_bytes(b"\x00garbage, not a database\n" * 100)

    for _restart in range(2):  # a plain restart does not help
        async with server:
            stuck = await api.queue(2)
            waiting = await api.queue(3)
            await api.wait_running(stuck)
            await api.post("/interrupt", {})
            await asyncio.sleep(STUCK_FOR)
            # Accepted, listed, never executed: one item "running", the rest pending.
            assert await api.ids() == ([stuck], [waiting])
            assert stuck not in await api.get("/history")
            assert (await api.get("/prompt"))["exec_info"]["queue_remaining"] == 2
            state = gpu_state(root)
            assert (state.busy, state.util(0)) == (False, 0)  # the GPU sits idle
    log = (root / "comfyui.log").read_text()
    failure = "Failed to restore the persisted queue: sqlite3.DatabaseError: file is not a database"
    assert log.count(failure + "\n") == 2

    remove_queue_files(root)
    async with server:
        assert await api.ids() == ([], [])  # what was queued is gone: clients re-submit
        fresh = await api.queue(5)
        await api.wait_done([fresh])
    assert (assets.read_bytes(), assets.stat().st_mtime_ns) == before


async def test_the_knobs_switch_the_mode_and_corrupt_the_database(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    root = tmp_path / "ComfyUI"
    server = SandboxComfy(root, speed=SPEED)
    api = Api(server, session)
    async with server:
        state = await api.post("/__sandbox/knobs", {"persisted_queue": True})
        assert state["persisted_queue"] is True
        assert "queue.db" in queue_files(root)
        await api.wait_done([await api.queue(1)])
        state = await api.post("/__sandbox/knobs", {"corrupt_queue_db": True, "reset": True})
        assert state["persisted_queue"] is True  # a mode, not a fault: reset keeps it
        assert queue_files(root) == ["queue.db", "queue.db-wal"]
        db = sqlite3.connect(root / "user" / "queue.db")
        with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
            db.execute("SELECT * FROM sqlite_master").fetchall()
        db.close()
        stuck = await api.queue(2)
        await api.wait_running(stuck)
        await asyncio.sleep(STUCK_FOR)
        assert await api.ids() == ([stuck], [])
        await api.post("/__sandbox/knobs", {"persisted_queue": False})
    # The knobs object outlives the server: the mode is off now, so the files are ignored.
    async with server:
        await api.wait_done([await api.queue(3)])


async def test_a_hung_node_keeps_the_gpu_busy(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    root = tmp_path / "ComfyUI"
    knobs = Knobs()
    server = SandboxComfy(root, speed=SPEED, knobs=knobs, device_name="NVIDIA H100 80GB HBM3")
    api = Api(server, session)
    async with server:
        idle = gpu_state(root)
        assert (idle.busy, idle.util(0)) == (False, 0)
        knobs.hang("ImageBlur")
        hung = await api.queue(1)
        await api.wait_running(hung)
        await asyncio.sleep(0.1)
        busy = gpu_state(root)
        assert (busy.busy, busy.util(0)) == (True, 98)
        assert busy.used_mib(0) > idle.used_mib(0)
        stats = await api.get("/system_stats")
        device = stats["devices"][0]
        assert "NVIDIA H100 80GB HBM3" in device["name"]
        used = (device["vram_total"] - device["vram_free"]) // 2**20
        assert json.loads((root / ".sandbox-gpu.json").read_text())["memory_used_mib"] == used
        knobs.release()
        await api.wait_done([hung])
        assert gpu_state(root).busy is False
    assert not (root / ".sandbox-gpu.json").exists()
    # A status file whose process is gone is not believed.
    (root / ".sandbox-gpu.json").write_text(json.dumps({"pid": 1, "busy": True}))
    assert gpu_state(root).busy is False


def test_the_command_line_takes_the_log_device_and_queue_mode(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    log = tmp_path / "portal" / "comfyui.log"
    command = [sys.executable, "-m", "comfyfleet.sandbox.comfy", "--root", str(root)]
    command += ["--port", "0", "--speed", "20", "--log", str(log), "--persisted-queue"]
    command += ["--device-name", "NVIDIA L40S", "--disable-auto-launch", "--enable-cors-header"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            match = re.search(r"go to: (http://127\.0\.0\.1:\d+)", proc.stderr.readline())
            url = match.group(1) if match else None
        assert url, "the server never said where it listens"
        stats = httpx.get(url + "/system_stats", timeout=10).json()
        assert stats["devices"][0]["name"] == "cuda:0 NVIDIA L40S : cudaMallocAsync"
        assert "--persisted-queue" in stats["system"]["argv"]
        assert (root / "user" / "queue.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    text = log.read_text()
    assert "Device: cuda:0 NVIDIA L40S : cudaMallocAsync\n" in text
    assert f"To see the GUI go to: {url}\n" in text
    assert not (root / "comfyui.log").exists()
