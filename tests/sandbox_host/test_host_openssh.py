"""A host as OpenSSH's own client sees it: pinned host key, exec, PTY, -L forwarding, scp."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.sandbox_host.hostkit import RunningHost, free_port

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")


def ssh_options(host: RunningHost, tmp_path: Path) -> list[str]:
    identity = tmp_path / "id_ed25519"
    if not identity.exists():
        host.key.write_private_key(str(identity))
        identity.chmod(0o600)
    key_type, key_data = (host.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{host.process.ssh_port} {key_type} {key_data}\n")
    return [
        "-F",
        "/dev/null",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-i",
        str(identity),
    ]


def test_ssh_exec_and_pty(host: RunningHost, tmp_path: Path) -> None:
    opts = [*ssh_options(host, tmp_path), "-p", str(host.process.ssh_port), "root@127.0.0.1"]
    result = subprocess.run(
        ["ssh", *opts, "echo $WORKSPACE; exit 4"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (4, f"{host.root / 'workspace'}\n")
    shell = subprocess.run(
        ["ssh", "-tt", *opts],
        input="echo venv=$VIRTUAL_ENV\nexit 3\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shell.returncode == 3
    assert f"venv={host.root / 'venv/main'}" in shell.stdout


def test_ssh_local_forward_and_scp(host: RunningHost, tmp_path: Path) -> None:
    host.wait_comfy()
    opts = ssh_options(host, tmp_path)
    local = free_port()
    tunnel = subprocess.Popen(
        [
            "ssh",
            *opts,
            "-N",
            "-L",
            f"{local}:127.0.0.1:{host.process.comfy_port}",
            "-p",
            str(host.process.ssh_port),
            "root@127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{local}/system_stats")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "tunnel never carried a request"
                time.sleep(0.1)
        assert resp.status_code == 200
    finally:
        tunnel.terminate()
        tunnel.wait(10)
    source = tmp_path / "model.safetensors"
    source.write_bytes(b"\x00" * 300_000)
    dest = host.root / "workspace/ComfyUI/models/loras/model.safetensors"
    copied = subprocess.run(
        ["scp", *opts, "-P", str(host.process.ssh_port), str(source), f"root@127.0.0.1:{dest}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    assert dest.read_bytes() == source.read_bytes()
