"""`comfyfleet queue` as a user runs it, against a ComfyUI URL: show, clear, interrupt, and a
repair that cannot restart (no SSH) and says so with exit code 1, keeping every prompt."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from tests.doctor.boxkit import chain

from .conftest import CliResult


def fill(url: str, client_id: str) -> list[str]:
    with httpx.Client(base_url=url, timeout=10) as http:
        ids = []
        for color in (1, 2, 3):
            answer = http.post("/prompt", json={"prompt": chain(color), "client_id": client_id})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["prompt_id"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if [i[1] for i in http.get("/queue").json()["queue_running"]] == ids[:1]:
                return ids
            time.sleep(0.02)
    raise AssertionError("the first prompt never started")


def test_show_clear_interrupt(cli: Any, comfy_sandbox_thread: Any) -> None:
    url = comfy_sandbox_thread.url
    assert cli("queue", url).stdout.strip() == "the queue is empty"
    comfy_sandbox_thread.knobs.slow("ImageBlur", 600)
    first, *rest = fill(url, "artist")
    shown: CliResult = cli("queue", url, "show", "--json")
    assert shown.code == 0, shown.stderr
    state = shown.json()
    assert [p["prompt_id"] for p in state["running"]] == [first]
    assert [(p["prompt_id"], p["client_id"]) for p in state["pending"]] == [
        (rest[0], "artist"),
        (rest[1], "artist"),
    ]
    assert cli("queue", url, "clear", "--json").json() == {"cleared": rest}
    interrupted = cli("queue", url, "interrupt")
    assert interrupted.code == 0 and interrupted.stdout.strip() == f"interrupted: {first}"
    bad = cli("queue", url, "flush")
    assert bad.code == 2 and "flush" in bad.stderr


def test_repair_without_ssh_stops_at_the_http_rungs(
    cli: Any, comfy_sandbox_thread: Any, tmp_path: Path
) -> None:
    url = comfy_sandbox_thread.url
    comfy_sandbox_thread.knobs.hang("ImageBlur")
    hung, *pending = fill(url, "artist")
    env = {"COMFYFLEET_PATHS__DATA_DIR": str(tmp_path / "data")}
    done = cli("queue", url, "repair", "--window", "0.5", env=env)
    assert done.code == 1, done.stderr
    out = done.stdout
    assert "interrupt: still running: " + hung in out and "clear: still running" in out
    assert f"hung prompt {hung}: still running" in out and "re-submitted" not in out
    assert "the queue still hangs; every prompt is kept in the snapshot file above" in out
    assert "interrupt: did not help" in done.stderr  # each rung is printed as it goes
    # Progress on a stderr that is no terminal keeps each line whole (paths, URLs).
    taken = next(line for line in done.stderr.splitlines() if line.startswith("snapshot: "))
    assert taken.endswith(".json") and str(tmp_path / "data") in taken
    path = next(line.split(": ", 1)[1] for line in out.splitlines() if "snapshot: " in line)
    snapshot = json.loads(Path(path.strip()).read_text())
    assert [item[1] for item in snapshot["queue_pending"]] == pending
    comfy_sandbox_thread.knobs.release()
