"""The repair ladder on a rented sandbox instance: a hung node needs the restart rung, a
corrupt persisted queue the file-removal rung; the pending prompts come back (same prompt
and client ids) and their outputs arrive; the hung prompt is reported, never re-queued."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from pathlib import Path

import pytest
from tests.doctor.boxkit import Box, chain

from comfyfleet.services.doctor_access import open_access
from comfyfleet.services.queue_repair import RepairReport, repair

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


async def run_repair(box: Box, window: float = 10.0) -> tuple[RepairReport, list[str]]:
    said: list[str] = []
    async with open_access(box.ref, box.cloud.settings, open_cloud=box.opener()) as access:
        report = await repair(access, seconds=window, progress=said.append)
    return report, said


async def queue_up(box: Box, client_id: str, colors: list[int]) -> list[str]:
    async with box.client(client_id=client_id) as client:
        return [(await client.queue_prompt(chain(c))).prompt_id for c in colors]


async def running(box: Box) -> list[str]:
    async with box.client() as client:
        return [item.prompt_id for item in (await client.queue()).running]


async def wait_running(box: Box, prompt_id: str) -> None:
    for _ in range(300):
        if prompt_id in await running(box):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prompt_id} never started")


async def test_a_working_queue_is_left_alone(box: Box) -> None:
    report, said = await run_repair(box)
    assert not report.needed and report.repaired and report.steps == []
    assert report.observed == "empty, and a probe prompt ran"
    assert said[-1] == "nothing to repair: the queue is empty and runs a probe prompt"
    async with box.client() as client:
        assert await client.history_all() == {}  # the probe left no trace


async def test_a_hung_node_needs_the_restart_rung(box: Box) -> None:
    await box.knobs({"hang": ["ImageBlur"]})  # ignores interrupts, like a stuck CUDA call
    hung, *pending = await queue_up(box, "artist", [10, 11, 12])
    await wait_running(box, hung)
    report, said = await run_repair(box)

    assert [(s.rung.value, s.worked) for s in report.steps] == [
        ("interrupt", False),
        ("clear", False),
        ("restart", True),
    ]
    assert report.steps[0].outcome is not None
    assert report.steps[0].outcome.hung_running == (hung,)
    assert "dropped 2 pending prompt(s)" in report.steps[1].detail
    assert report.hung == {hung: "dropped by the repair (not re-queued)"}
    assert report.resubmitted == pending and report.repaired
    assert any(line.startswith("restart: worked") for line in said)

    done = await box.wait_history(pending)
    for prompt_id, entry in done.items():
        assert entry.succeeded and entry.outputs, prompt_id
        assert entry.item is not None and entry.item.client_id == "artist"
        assert entry.item.prompt_id == prompt_id
    async with box.client() as client:
        assert await client.history(hung) is None  # reported, never re-queued
        assert len(await client.queue()) == 0

    snapshot = Path(report.snapshot_file)
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    kept = json.loads(snapshot.read_text())
    assert [item[1] for item in kept["queue_running"]] == [hung]
    assert [item[1] for item in kept["queue_pending"]] == pending
    assert kept["queue_pending"][0][3] == {"client_id": "artist"}
    assert kept["queue_pending"][0][2]["2"]["class_type"] == "ImageBlur"  # the prompt, whole


async def test_a_corrupt_persisted_queue_needs_its_files_removed(box: Box) -> None:
    # The field report's build keeps its queue in user/queue.db: a flag in COMFYUI_ARGS.
    await box.sh(
        'echo "COMFYUI_ARGS=\\"--disable-auto-launch --port 18188 --persisted-queue\\"" '
        '>> "$WORKSPACE/.env"'
    )
    await box.restart()
    user = box.comfy_dir / "user"
    assets = user / "comfyui.db"
    before = (assets.read_bytes(), assets.stat().st_mtime_ns)
    await box.knobs({"corrupt_queue_db": True})
    stuck, *waiting = await queue_up(box, "studio-app", [20, 21, 22])
    await wait_running(box, stuck)

    report, _said = await run_repair(box)
    assert [(s.rung.value, s.worked) for s in report.steps] == [
        ("interrupt", False),
        ("clear", False),
        ("restart", False),
        ("remove-queue-files", True),
    ]
    restart = report.steps[2].outcome
    assert restart is not None and restart.probe.value == "stuck"  # an empty queue still hangs
    removed = report.steps[3].detail.split(";")[0]
    assert removed.startswith("removed queue.db") and "comfyui.db" not in removed
    assert report.resubmitted == waiting and report.hung == {
        stuck: "dropped by the repair (not re-queued)"
    }
    done = await box.wait_history(waiting)
    assert all(e.succeeded and e.item and e.item.client_id == "studio-app" for e in done.values())

    assert (assets.read_bytes(), assets.stat().st_mtime_ns) == before  # never touched
    with sqlite3.connect(user / "queue.db") as db:  # a fresh, working queue database
        assert db.execute("SELECT COUNT(*) FROM queue").fetchone() == (0,)
