"""A host's knobs (drop, refuse, move, new host key) and its life: stop, start again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from tests.sandbox_host.hostkit import (
    SPEED,
    RunningHost,
    launch,
    pid_exists,
    relaunch,
    wait_gone,
)

from comfyfleet.errors import SandboxError
from comfyfleet.sandbox.host import HostProcess, HostSpec, start_host


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Iterator[RunningHost]:
    running = launch(tmp_path_factory.mktemp("host"), wheel_cache, provisioning_seconds=0)
    try:
        yield running
    finally:
        running.process.stop()


async def test_drop_cuts_every_connection(host: RunningHost) -> None:
    first, second = await host.connect(), await host.connect()
    proc = await first.create_process("sleep 61")
    await asyncio.sleep(0.2)
    dropped = await asyncio.to_thread(host.process.drop_ssh)
    assert dropped == 2
    for conn in (first, second):
        await asyncio.wait_for(conn.wait_closed(), 5)
    await asyncio.wait_for(proc.wait_closed(), 5)
    async with await host.connect() as conn:  # the server itself is still there
        await wait_no_match(conn, "sleep 61")


async def wait_no_match(conn: asyncssh.SSHClientConnection, pattern: str) -> None:
    """Until no process matches `pattern` (a cut session's command gets SIGHUP)."""
    deadline = time.monotonic() + 5
    while (await conn.run(f"pgrep -f '{pattern}'")).exit_status == 0:
        assert time.monotonic() < deadline, f"{pattern!r} still runs"
        await asyncio.sleep(0.1)


async def test_closing_a_session_ends_its_command(host: RunningHost) -> None:
    async with await host.connect() as conn:
        proc = await conn.create_process("tail -f /dev/null; sleep 62")
        await asyncio.sleep(0.2)
        assert (await conn.run("pgrep -f 'tail -f /dev/null'")).exit_status == 0
        proc.close()
        await wait_no_match(conn, "tail -f /dev/null")


async def test_refuse_then_accept_again_on_the_same_port(host: RunningHost) -> None:
    port = host.process.ssh_port
    await asyncio.to_thread(host.process.refuse_ssh, 1.0 * SPEED)  # one real second
    with pytest.raises(OSError):
        await host.connect()
    deadline = time.monotonic() + 10
    while True:
        try:
            conn = await host.connect()
            break
        except OSError:
            assert time.monotonic() < deadline, "SSH did not come back"
            await asyncio.sleep(0.1)
    async with conn:
        assert (await conn.run("true")).exit_status == 0
    assert host.process.ssh_port == port


async def test_move_restarts_ssh_on_a_new_port(host: RunningHost) -> None:
    old = host.process.ssh_port
    conn = await host.connect()
    new = await asyncio.to_thread(host.process.move_ssh)
    assert new != old and host.process.ssh_port == new
    await asyncio.wait_for(conn.wait_closed(), 5)
    with pytest.raises(OSError):
        await asyncssh.connect(
            "127.0.0.1", old, username="root", client_keys=[host.key], known_hosts=None
        )
    async with await host.connect() as fresh:
        assert (await fresh.run("true")).exit_status == 0


async def test_a_rotated_host_key_fails_a_pinned_client(host: RunningHost) -> None:
    old_key = asyncssh.read_public_key(str(host.root / "etc/ssh/ssh_host_ed25519_key.pub"))
    pinned = asyncssh.import_known_hosts(
        f"[127.0.0.1]:{host.process.ssh_port} {old_key.export_public_key().decode()}"
    )
    async with await host.connect(known_hosts=pinned) as conn:
        assert (await conn.run("true")).exit_status == 0
    fingerprint = await asyncio.to_thread(host.process.rotate_host_key)
    assert fingerprint != old_key.get_fingerprint("sha256")
    assert host.process.host_key_fingerprint == fingerprint
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await host.connect(known_hosts=pinned)


async def test_stop_ends_comfy_and_sessions_and_a_new_start_keeps_the_root(
    host: RunningHost,
) -> None:
    await asyncio.to_thread(host.wait_comfy)
    conn = await host.connect()
    # A sleep whose pid the session reports itself (a machine-wide pgrep could find others').
    proc = await conn.create_process("sleep 300 & echo $!; wait")
    sleeper = int((await proc.stdout.readline()).strip())
    comfy_pid = host.process.status()["comfyui"]["pid"]
    fingerprint = host.process.host_key_fingerprint
    old_ports = (host.process.ssh_port, host.process.proxy_port)
    await asyncio.to_thread(host.process.stop)
    conn.abort()
    assert not host.process.alive()
    assert not pid_exists(comfy_pid) and not pid_exists(sleeper)
    assert HostProcess.attach(host.root) is None
    with pytest.raises(SandboxError):
        _ = host.process.ssh_port
    host.process.stop()  # idempotent

    again = await asyncio.to_thread(relaunch, host)
    host.process = again.process  # the module fixture stops whatever runs last
    assert host.process.host_key_fingerprint == fingerprint
    assert (host.process.ssh_port, host.process.proxy_port) != old_ports
    assert host.process.status()["provisioning"] is False  # first boot only
    attached = HostProcess.attach(host.root)
    assert attached is not None and attached.pid == host.process.pid
    with pytest.raises(SandboxError, match="already runs"):
        start_host(host.spec, cache_dir=host.cache_dir)
    await asyncio.to_thread(host.wait_comfy)
    async with await host.connect() as fresh:
        result = await fresh.run("test -f $WORKSPACE/../venv/main/pyvenv.cfg && echo kept")
    assert str(result.stdout).strip() == "kept"


def test_a_host_ends_with_its_launcher(tmp_path: Path, wheel_cache: Path) -> None:
    spec = HostSpec(
        instance_id=5,
        root=tmp_path / "root",
        authorized_keys_file=tmp_path / "keys",
        web_token="t",
        env={},
        speed=SPEED,
        gpu_name="RTX 4090",
        num_gpus=1,
        image="x",
        provisioning_seconds=0,
    )
    launcher = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from comfyfleet.sandbox.host import HostSpec, start_host
        spec = HostSpec.from_json({spec.to_json()!r})
        host = start_host(spec, cache_dir=Path({str(wheel_cache)!r}))
        host.wait_ready(30)
        print(host.pid, flush=True)
        time.sleep(300)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        host_pid = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    wait_gone(host_pid)
    assert HostProcess.attach(spec.root) is None
