"""The queue of a plain ComfyUI URL (HTTP only): show, interrupt, clear, and a repair that can
only climb the HTTP rungs — it says so, re-submits nothing, and keeps every prompt on disk."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tests.doctor.boxkit import chain

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import Settings, load_settings
from comfyfleet.sandbox.comfy.server import SandboxComfy
from comfyfleet.services import queue_repair as q
from comfyfleet.services.doctor_access import open_access


def settings_in(tmp_path: Path) -> Settings:
    env = {"COMFYFLEET_PATHS__DATA_DIR": str(tmp_path / "data")}
    return load_settings(env=env, config_file=tmp_path / "none.toml")


async def fill(server: SandboxComfy, client_id: str) -> list[str]:
    extra = {"api_key_comfy_org": "comfyui-0123456789abcdef"}  # an API node's credential
    async with ComfyClient(server.url, client_id=client_id) as client:
        ids = [(await client.queue_prompt(chain(c), extra_data=extra)).prompt_id for c in (1, 2, 3)]
        for _ in range(200):
            if ids[0] in [i.prompt_id for i in (await client.queue()).running]:
                return ids
            await asyncio.sleep(0.02)
        raise AssertionError("the first prompt never started")


async def test_show_clear_and_interrupt(comfy_sandbox: SandboxComfy, tmp_path: Path) -> None:
    comfy_sandbox.knobs.slow("ImageBlur", 600)  # reports progress, honours interrupts
    first, *rest = await fill(comfy_sandbox, "artist")
    async with open_access(comfy_sandbox.url, settings_in(tmp_path)) as access:
        assert access.ssh is None and access.instance is None
        state = await q.show(access)
        assert [i.prompt_id for i in state.running] == [first]
        assert [i.prompt_id for i in state.pending] == rest
        shown: dict[str, Any] = q.queue_json(state)
        assert shown["pending"][0]["client_id"] == "artist" and shown["pending"][0]["nodes"] == 3
        assert await q.clear(access) == rest
        assert await q.interrupt(access) == [first]
        entry = None
        for _ in range(100):
            entry = await access.client.history(first)
            if entry is not None:
                break
            await access.clock.sleep(0.05)
        assert entry is not None and entry.message("execution_interrupted") is not None
        assert len(await q.show(access)) == 0
        assert await q.interrupt(access) == [] and await q.clear(access) == []


async def test_a_url_repair_stops_where_a_restart_would_be_needed(
    comfy_sandbox: SandboxComfy, tmp_path: Path
) -> None:
    comfy_sandbox.knobs.hang("ImageBlur")
    hung, *pending = await fill(comfy_sandbox, "artist")
    # Snapshots of earlier repairs: only the newest SNAPSHOTS_KEPT stay once this one is written.
    folder = tmp_path / "data" / "queue-snapshots"
    folder.mkdir(parents=True)
    older = [folder / f"queue-url-{n}.json" for n in range(q.SNAPSHOTS_KEPT + 5)]
    for n, path in enumerate(older):
        path.write_text("{}")
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
    said: list[str] = []
    async with open_access(comfy_sandbox.url, settings_in(tmp_path)) as access:
        report = await q.repair(access, seconds=0.5, progress=said.append)
    assert [(s.rung.value, s.worked) for s in report.steps] == [
        ("interrupt", False),
        ("clear", False),
    ]
    assert not report.repaired and report.resubmitted == []
    assert report.hung == {hung: "still running"}
    kept = json.loads(Path(report.snapshot_file).read_text())
    assert [item[1] for item in kept["queue_pending"]] == pending  # nothing lost
    assert kept["queue_pending"][0][3] == {
        "api_key_comfy_org": "<withheld>",  # never written to disk
        "client_id": "artist",
    }
    assert Path(report.snapshot_file).parent == folder
    assert sorted(folder.iterdir()) == sorted([Path(report.snapshot_file), *older[6:]])
    comfy_sandbox.knobs.release()
