"""Connections: host keys pinned on first contact, changed keys refused with the fix, errors."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
from pathlib import Path

import pytest
from tests.remote.conftest import make_target
from tests.remote.opensshd import OpenSshd, free_port
from tests.sandbox_host.hostkit import RunningHost

from comfyfleet.errors import HostKeyChanged, SshAuthFailed, SshKeyError, SshUnreachable
from comfyfleet.remote.banner import banner_check
from comfyfleet.remote.commands import run
from comfyfleet.remote.hostkeys import forget, read_pins
from comfyfleet.remote.keys import KeyPair
from comfyfleet.remote.ssh import connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

CLOCK = SystemClock()


def host_key_line(host: RunningHost) -> str:
    return " ".join((host.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])


async def test_first_contact_pins_the_offered_key(
    sandbox: RunningHost, sandbox_target: SshTarget
) -> None:
    assert not sandbox_target.known_hosts_path.exists()
    async with connect(sandbox_target, clock=CLOCK) as conn:
        assert (await run(conn, "echo ok")).stdout == "ok\n"
        fingerprint = conn.host_key_fingerprint
    path = sandbox_target.known_hosts_path
    expected = f"[127.0.0.1]:{sandbox_target.port} {host_key_line(sandbox)}\n"
    assert path.read_text() == expected
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert fingerprint == sandbox.process.host_key_fingerprint
    # Known now: a second connection is accepted and adds nothing.
    async with connect(sandbox_target, clock=CLOCK) as conn:
        assert (await run(conn, "true")).exit_code == 0
    assert path.read_text() == expected


async def test_real_sshd_pins_one_of_its_keys_and_refuses_new_ones(
    sshd: OpenSshd, sshd_target: SshTarget
) -> None:
    async with connect(sshd_target, clock=CLOCK) as conn:
        assert (await run(conn, "id -un")).stdout.strip() == sshd.user
        # The hardware-accelerated cipher is chosen (the tunnel's throughput depends on it).
        ssh = conn.asyncssh_connection
        assert ssh.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
        assert ssh.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"
    pins = read_pins(sshd_target.known_hosts_path)
    offered = {sshd.host_public_key("ed25519"), sshd.host_public_key("ecdsa")}
    assert len(pins) == 1
    assert " ".join(pins[0].key.export_public_key().decode().split()[:2]) in offered
    sshd.rekey()
    with pytest.raises(HostKeyChanged) as caught:
        await connect(sshd_target, clock=CLOCK)
    assert caught.value.pinned == [pins[0].fingerprint]
    assert caught.value.offered not in (pins[0].fingerprint, "unknown")
    assert read_pins(sshd_target.known_hosts_path) == pins  # a refused key is never pinned


async def test_rotated_host_key_is_refused_with_the_fix_in_the_message(
    sandbox: RunningHost, sandbox_target: SshTarget
) -> None:
    async with connect(sandbox_target, clock=CLOCK) as conn:
        old = conn.host_key_fingerprint
    new = await asyncio.to_thread(sandbox.process.rotate_host_key)
    with pytest.raises(HostKeyChanged) as caught:
        await connect(sandbox_target, clock=CLOCK)
    error = caught.value
    text = str(error)
    for part in (
        "instance 31337",
        f"127.0.0.1:{sandbox_target.port}",
        old,
        new,
        "comfyfleet ssh-config forget 31337",
        f"[127.0.0.1]:{sandbox_target.port}",
        str(sandbox_target.known_hosts_path),
    ):
        assert part in text, part
    assert (error.pinned, error.offered) == ([old], new)
    assert error.exit_code == 7 and not error.retryable
    # The fix the message gives works: forget, then the new key is pinned on contact.
    assert forget(sandbox_target.known_hosts_path, "127.0.0.1", sandbox_target.port) == 1
    async with connect(sandbox_target, clock=CLOCK) as conn:
        assert conn.host_key_fingerprint == new


async def test_a_moved_endpoint_must_show_the_instances_pinned_key(
    sandbox: RunningHost,
    sshd: OpenSshd,
    sandbox_target: SshTarget,
) -> None:
    async with connect(sandbox_target, clock=CLOCK) as conn:
        key = conn.host_key_fingerprint
    # Same instance, new port: its own key is accepted there and pinned for the new endpoint.
    new_port = await asyncio.to_thread(sandbox.process.move_ssh)
    moved = dataclasses.replace(sandbox_target, port=new_port)
    async with connect(moved, clock=CLOCK) as conn:
        assert conn.host_key_fingerprint == key
    hosts = [pin.hosts for pin in read_pins(sandbox_target.known_hosts_path)]
    assert hosts == [(f"[127.0.0.1]:{sandbox_target.port}",), (f"[127.0.0.1]:{new_port}",)]
    # An endpoint showing another key is not this instance: refused, not pinned.
    elsewhere = dataclasses.replace(sandbox_target, port=sshd.port, user=sshd.user)
    with pytest.raises(HostKeyChanged) as caught:
        await connect(elsewhere, clock=CLOCK)
    assert caught.value.pinned == [key]
    assert len(read_pins(sandbox_target.known_hosts_path)) == 2


async def test_unknown_key_and_closed_port_are_told_apart(
    sandbox: RunningHost, sandbox_target: SshTarget, tmp_path: Path
) -> None:
    other = tmp_path / "other_key"
    sandbox.other_key.write_private_key(str(other))
    other.chmod(0o600)
    wrong_key = dataclasses.replace(sandbox_target, key_path=other)
    with pytest.raises(SshAuthFailed) as denied:
        await connect(wrong_key, clock=CLOCK)
    assert f"{other}.pub" in str(denied.value) and not denied.value.retryable
    missing = dataclasses.replace(sandbox_target, key_path=tmp_path / "no-such-key")
    with pytest.raises(SshKeyError, match="does not exist"):
        await connect(missing, clock=CLOCK)
    closed = dataclasses.replace(sandbox_target, port=free_port())
    with pytest.raises(SshUnreachable) as unreachable:
        await connect(closed, clock=CLOCK, connect_timeout=5)
    assert unreachable.value.retryable and unreachable.value.exit_code == 7
    assert not isinstance(unreachable.value.__cause__, SshUnreachable)


async def test_keepalive_notices_a_silent_peer(
    sandbox: RunningHost, client_key: KeyPair, tmp_path: Path
) -> None:
    # A TCP relay that goes silent (keeps the socket open, forwards nothing): only
    # keepalive can tell the connection is dead.
    frozen = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", sandbox.process.ssh_port)
        writers.extend((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if frozen.is_set():
                    return  # swallow everything from now on; the sockets stay open
                dst.write(data)

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = make_target(port, "root", client_key, tmp_path)
    try:
        conn = await connect(target, clock=CLOCK, keepalive=0.2, keepalive_count=2)
        frozen.set()
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert conn.is_closed()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_banner_check(sandbox: RunningHost, sshd: OpenSshd) -> None:
    assert await banner_check("127.0.0.1", sandbox.process.ssh_port)
    assert await banner_check("127.0.0.1", sshd.port)
    assert not await banner_check("127.0.0.1", free_port(), timeout=1)
    # The token proxy accepts TCP but says nothing first: not an SSH server.
    assert not await banner_check("127.0.0.1", sandbox.process.proxy_port, timeout=0.5)

    async def greeter(lines: bytes) -> int:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(lines)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    servers: list[asyncio.Server] = []
    try:
        # RFC 4253 lets a server send other lines before its identification string.
        assert await banner_check("127.0.0.1", await greeter(b"hello\r\nSSH-2.0-Test\r\n"))
        assert not await banner_check("127.0.0.1", await greeter(b"HTTP/1.1 400 Bad\r\n"))
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()
