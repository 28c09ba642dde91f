"""Sandbox hosts for tests: start real host processes on loopback, with keys and helpers."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh
import httpx
import pytest

from comfyfleet.sandbox.host import HostProcess, HostSpec, start_host

SPEED = 100.0
TOKEN = "sandbox-web-token-0123456789"


@dataclass
class RunningHost:
    """A started host with the keys that may (and may not) log in to it."""

    process: HostProcess
    spec: HostSpec
    key: asyncssh.SSHKey
    other_key: asyncssh.SSHKey
    cache_dir: Path

    @property
    def root(self) -> Path:
        return self.spec.root.resolve()

    async def connect(self, **kwargs: object) -> asyncssh.SSHClientConnection:
        options: dict[str, object] = {
            "username": "root",
            "client_keys": [self.key],
            "known_hosts": None,
        }
        options.update(kwargs)
        return await asyncssh.connect("127.0.0.1", self.process.ssh_port, **options)

    def proxy_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.process.proxy_port}{path}"

    def wait_comfy(self, timeout: float = 30.0) -> None:
        """Until ComfyUI answers through the proxy (provisioning and start-up are over)."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.proxy_url("/system_stats"), headers=headers).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"ComfyUI did not answer within {timeout} s")


def launch(
    base: Path,
    cache_dir: Path,
    *,
    provisioning_seconds: float = 50.0,
    env: dict[str, str] | None = None,
    num_gpus: int = 1,
) -> RunningHost:
    key = asyncssh.generate_private_key("ssh-ed25519")
    other = asyncssh.generate_private_key("ssh-ed25519")
    keys = base / "authorized_keys"
    keys.write_bytes(b"# keys the cloud attached\n" + key.export_public_key())
    spec = HostSpec(
        instance_id=31337,
        root=base / "root",
        authorized_keys_file=keys,
        web_token=TOKEN,
        env={"FOO": "bar baz", **(env or {})},
        speed=SPEED,
        gpu_name="RTX_3090",
        num_gpus=num_gpus,
        image="vastai/comfy:v0.3.64-cuda-12.9-py312",
        provisioning_seconds=provisioning_seconds,
    )
    # The host inherits this process's env: give it a home of its own, never the user's.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base / "home"))
        process = start_host(spec, cache_dir=cache_dir)
    try:
        process.wait_ready(30)
    except BaseException:
        process.stop()
        raise
    return RunningHost(process, spec, key, other, cache_dir)


def relaunch(host: RunningHost) -> RunningHost:
    """Start the same root again (a stopped instance started), same keys."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(host.spec.root.parent / "home"))
        process = start_host(host.spec, cache_dir=host.cache_dir)
    process.wait_ready(30)
    return replace(host, process=process)


def pid_exists(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_exists(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
