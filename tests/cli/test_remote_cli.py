"""Managing an instance from the terminal: the installed CLI against a rented sandbox instance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.sync.client

from .cloudkit import api, exe, run, sandbox_world


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A sandbox cloud with one ready instance named `box`."""
    for env in sandbox_world(tmp_path_factory):
        up = run(env, "up", "--order", "dph_total", "--name", "box", "--json")
        assert up.returncode == 0, up.stderr
        env["BOX_ID"] = str(json.loads(up.stdout)["id"])
        yield env


def test_exec_streams_output_and_returns_the_exit_code(box: dict[str, str]) -> None:
    done = run(box, "exec", "box", "--", "echo out; echo err >&2; echo $WORKSPACE; exit 7")
    assert done.returncode == 7
    lines = done.stdout.splitlines()
    assert lines[0] == "out" and lines[1].endswith("/workspace")
    assert "err" in done.stderr


def test_hostile_values_cannot_inject(box: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # A name with shell metacharacters reaches the remote as a literal argument of pip.
    done = run(box, "pip", "box", "--", "show", f"x; touch {marker}")
    assert done.returncode != 0
    assert not marker.exists()


def test_gpu_disk_ps_json(box: dict[str, str]) -> None:
    gpus = json.loads(run(box, "gpu", "box", "--json").stdout)
    assert gpus[0]["name"].startswith("NVIDIA") and gpus[0]["memory_total_mib"] > 0
    assert any(p["is_comfy"] for p in gpus[0]["processes"])
    disk = json.loads(run(box, "disk", "box", "--json").stdout)
    assert "/" in disk and disk["/"]["total_bytes"] > 0
    procs = json.loads(run(box, "ps", "box", "--json").stdout)
    assert any(p["is_comfy"] for p in procs)


def test_pip_is_the_venv_pip(box: dict[str, str]) -> None:
    listed = run(box, "pip", "box", "--", "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    names = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert names["torch"].endswith("+cu128")
    installed = run(box, "pip", "box", "--", "install", "onnx")
    assert installed.returncode == 0, installed.stderr
    venv = run(box, "exec", "box", "--", "$WORKSPACE/../venv/main/bin/python -c 'import onnx'")
    assert venv.returncode == 0, venv.stderr
    system = run(box, "exec", "box", "--", "python3 -c 'import onnx'")
    assert system.returncode != 0, "the system Python must not see what the venv pip installed"


def test_pip_install_waits_for_another_change_and_gives_up_with_6(box: dict[str, str]) -> None:
    workspace = Path(run(box, "exec", "box", "--", "echo $WORKSPACE").stdout.strip())
    lock = workspace / ".comfyfleet-change.lock"
    lock.with_name(lock.name + ".who").write_text("nodes install Slow-Pack (by ann@laptop)\n")
    # Another command holds the instance's change lock (plain flock(1), as the instance runs it).
    holder = subprocess.Popen(["flock", str(lock), "sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        impatient = {**box, "COMFYFLEET_REMOTE__CHANGE_WAIT": "1"}
        done = run(impatient, "pip", "box", "--", "install", "onnx")
        assert done.returncode == 6, done.stderr
        assert "waiting for another change" in done.stderr
        assert "nodes install Slow-Pack (by ann@laptop)" in done.stderr
        assert "change_wait" in done.stderr
        # Reading the venv does not wait.
        assert run(impatient, "pip", "box", "--", "list").returncode == 0
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and the sleep holding its lock
        holder.wait()
    started = time.monotonic()
    assert run(box, "pip", "box", "--", "install", "onnx").returncode == 0
    assert time.monotonic() - started < 30, "the lock outlived its holder"


def test_logs_and_restart(box: dict[str, str]) -> None:
    before = run(box, "logs", "box", "-n", "50")
    assert before.returncode == 0, before.stderr
    assert "To see the GUI go to" in before.stdout
    restarted = run(box, "restart", "box", "--json")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["restarted"] is True
    old = run(
        box, "exec", "box", "--", "ls /var/log/portal/ 2>/dev/null; ls $WORKSPACE/../var/log/portal"
    )
    assert "comfyui.log.old" in old.stdout


def test_ssh_config_works_with_the_real_ssh_client(box: dict[str, str]) -> None:
    ssh = shutil.which("ssh")
    assert ssh, "OpenSSH's client is needed for this test"
    synced = run(box, "ssh-config", "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    (conf,) = json.loads(synced.stdout)["written"]
    text = Path(conf).read_text()
    assert text.startswith("# generated by comfyfleet")
    alias = next(line.split()[1] for line in text.splitlines() if line.startswith("Host "))
    user_config = Path(box["HOME"]) / ".ssh" / "config"
    assert "Include" in user_config.read_text()
    # OpenSSH takes ~ from the password database: give it the file explicitly.
    done = subprocess.run(
        [ssh, "-F", conf, "-o", "BatchMode=yes", alias, "echo via-openssh"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via-openssh"
    again = json.loads(run(box, "ssh-config", "sync", "--json").stdout)
    assert again["include"]["changed"] is False


def test_connect_carries_http_and_websocket_and_heals(box: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [exe(), "connect", "box", "--no-browser", "--port", "0"],
        env=box,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "http://127.0.0.1:" in line:
                url = "http://127.0.0.1:" + line.split("http://127.0.0.1:")[1].split()[0]
        assert url, "connect never printed its local URL"
        stats = httpx.get(url + "/system_stats", timeout=10).json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
        ws_url = url.replace("http://", "ws://") + "/ws?clientId=tunnel-test"
        with websockets.sync.client.connect(ws_url) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "status"
        listed = json.loads(run(box, "ls", "--json").stdout)
        assert listed[0]["tunnel"]["status"] == "up"
        # Kill the instance's SSH connections: the tunnel comes back by itself.
        base, headers = api(box)
        r = httpx.post(
            f"{base}/__sandbox/instances/{box['BOX_ID']}/change_endpoint",
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        healed = False
        while time.monotonic() < deadline and not healed:
            try:
                healed = httpx.get(url + "/system_stats", timeout=5).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        if not healed:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"the tunnel did not come back after the endpoint moved:\n{err}")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "tunnels closed" in err


def test_changed_host_key_is_refused_until_forgotten(box: dict[str, str]) -> None:
    from comfyfleet.sandbox.host import HostProcess

    assert run(box, "exec", "box", "--", "true").returncode == 0  # pinned on first contact
    root = (
        Path(box["COMFYFLEET_PATHS__DATA_DIR"]) / "sandbox" / "instances" / box["BOX_ID"] / "root"
    )
    HostProcess.attach(root).rotate_host_key()
    refused = run(box, "exec", "box", "--", "true")
    assert refused.returncode != 0
    assert "host key" in refused.stderr.lower()
    assert "ssh-config forget" in refused.stderr
    forgot = run(box, "ssh-config", "forget", "box", "--json")
    assert forgot.returncode == 0 and json.loads(forgot.stdout)["removed"] >= 1
    assert run(box, "exec", "box", "--", "true").returncode == 0


def test_ssh_runs_a_command_with_pinned_keys(box: dict[str, str]) -> None:
    done = run(box, "ssh", "box", "--", "echo", "via-comfyfleet-ssh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via-comfyfleet-ssh"
    failed = run(box, "ssh", "box", "--", "exit 5")
    assert failed.returncode == 5
