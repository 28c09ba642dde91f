"""`comfyfleet sandbox start|status|stop`, run as a user would: subprocesses and real pids."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyfleet.sandbox.vast import pids
from comfyfleet.sandbox.vast.process import stop_running
from comfyfleet.util.processes import pid_alive


def _comfyfleet() -> list[str]:
    exe = shutil.which("comfyfleet") or str(Path(sys.executable).parent / "comfyfleet")
    if not Path(exe).exists():
        pytest.fail("the comfyfleet console script is not installed: pip install -e '.[test]'")
    return [exe]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_comfyfleet(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def run_json(*args: str) -> tuple[int, Any]:
    proc = run(*args, "--json")
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "sandbox-state"
    yield folder
    stop_running(folder)  # never leave a server behind, whatever the test did


def test_start_detach_status_stop(state: Path) -> None:
    base = ("--state-dir", str(state))
    code, started = run_json("sandbox", "start", "--detach", "--no-hosts", "--speed", "100", *base)
    assert code == 0 and started["already_running"] is False
    assert started["url"].startswith("http://127.0.0.1:") and started["speed"] == 100.0
    assert pids.is_ours(started["pid"], "comfyfleet.sandbox.vast")
    for name in ("sandbox.json", "api_key", "cloud.json"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    assert (state / "api_key").read_text().strip() == started["api_key"]

    code, again = run_json("sandbox", "start", "--detach", *base)
    assert code == 0 and again["already_running"] is True and again["pid"] == started["pid"]
    assert "already running" in run("sandbox", "start", *base).stdout

    headers = {"Authorization": f"Bearer {started['api_key']}"}
    with httpx.Client(base_url=started["url"], headers=headers) as client:
        offer = client.post("/api/v0/bundles/", json={"limit": 1}).json()["offers"][0]
        created = client.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "label": "s1"})
        assert created.status_code == 200

    code, status = run_json("sandbox", "status", *base)
    assert code == 0 and status["running"] is True
    assert status["url"] == started["url"] and status["api_key"] == started["api_key"]
    assert status["speed"] == 100.0 and status["uptime"] >= 0
    assert [i["label"] for i in status["instances"]] == ["s1"]
    assert status["credit"] <= 50.0
    text = run("sandbox", "status", *base).stdout
    assert started["url"] in text and started["api_key"] in text and "s1" in text

    code, stopped = run_json("sandbox", "stop", *base)
    assert code == 0 and stopped == {"stopped": True, "pid": started["pid"]}
    assert not pid_alive(started["pid"])
    assert not (state / "sandbox.json").exists()
    code, status = run_json("sandbox", "status", *base)
    assert code == 1 and status["running"] is False
    assert run_json("sandbox", "stop", *base) == (0, {"stopped": False, "pid": None})

    code, restarted = run_json("sandbox", "start", "--detach", "--no-hosts", *base)
    assert restarted["api_key"] == started["api_key"]  # generated once
    code, status = run_json("sandbox", "status", *base)
    assert [i["label"] for i in status["instances"]] == ["s1"]  # state survived the stop


def test_two_servers_never_share_a_state_dir(state: Path) -> None:
    _, started = run_json("sandbox", "start", "--detach", "--no-hosts", "--state-dir", str(state))
    second = subprocess.run(
        [sys.executable, "-m", "comfyfleet.sandbox.vast", "--state-dir", str(state), "--no-hosts"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 3 and "already running" in second.stderr
    assert run_json("sandbox", "status", "--state-dir", str(state))[1]["pid"] == started["pid"]


def test_the_default_state_dir_is_in_the_data_dir(isolated_home: Path) -> None:
    folder = isolated_home / ".local" / "share" / "comfyfleet" / "sandbox"
    try:
        code, started = run_json("sandbox", "start", "--detach", "--no-hosts")
        assert code == 0 and Path(started["state_dir"]) == folder
        assert (folder / "sandbox.json").exists()
        assert run_json("sandbox", "status")[1]["pid"] == started["pid"]
    finally:
        stop_running(folder)


def test_stop_never_signals_a_process_that_is_not_ours(state: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state.mkdir(parents=True)
        record = {
            "url": "http://127.0.0.1:9", "api_key": "k", "pid": bystander.pid, "speed": 1.0,
            "started_at": time.time(), "state_dir": str(state), "version": "0",
        }  # fmt: skip
        (state / "sandbox.json").write_text(json.dumps(record))
        assert run_json("sandbox", "status", "--state-dir", str(state))[0] == 1
        _, stopped = run_json("sandbox", "stop", "--state-dir", str(state))
        assert stopped["stopped"] is False
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()


def test_foreground_start_stops_cleanly_on_ctrl_c(state: Path) -> None:
    command = [
        *_comfyfleet(),
        "sandbox",
        "start",
        "--no-hosts",
        "--json",
        "--state-dir",
        str(state),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("}"):
                    break
            info = json.loads("".join(lines))
            assert info["pid"] == proc.pid
            code, status = run_json("sandbox", "status", "--state-dir", str(state))
            assert code == 0 and status["pid"] == proc.pid
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            assert not (state / "sandbox.json").exists()
            assert (state / "cloud.json").exists()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_killed_server_can_be_started_again(state: Path) -> None:
    base = ("--state-dir", str(state))
    _, started = run_json("sandbox", "start", "--detach", "--no-hosts", *base)
    os.kill(started["pid"], signal.SIGKILL)
    assert pids.wait_gone(started["pid"], 10)
    assert run_json("sandbox", "status", *base)[0] == 1  # the stale record is not trusted
    code, again = run_json("sandbox", "start", "--detach", "--no-hosts", *base)
    assert code == 0 and again["already_running"] is False and again["pid"] != started["pid"]


def test_exit_with_stops_the_sandbox_when_its_owner_ends(state: Path) -> None:
    base = ("--state-dir", str(state))
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        code, started = run_json(
            "sandbox", "start", "--detach", "--no-hosts", "--exit-with", str(owner.pid), *base
        )
        assert code == 0 and pid_alive(started["pid"])
        time.sleep(1.0)
        assert pid_alive(started["pid"])  # stays while its owner runs
    finally:
        owner.kill()
        owner.wait()
    assert pids.wait_gone(started["pid"], 15), "the sandbox outlived the process it exits with"
    assert not (state / "sandbox.json").exists()  # a clean stop, not a crash
    missing = run("sandbox", "start", "--detach", "--exit-with", str(owner.pid), *base)
    assert missing.returncode == 2 and "--exit-with" in missing.stderr
    assert str(owner.pid) in missing.stderr
