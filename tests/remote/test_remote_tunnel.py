"""Tunnels: HTTP and WebSocket to ComfyUI, self-healing after drops and moves, state files."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from tests.remote.opensshd import OpenSshd
from tests.sandbox_host.hostkit import RunningHost
from websockets.asyncio.client import connect as ws_connect

from comfyfleet.errors import (
    HostKeyChanged,
    SshKeyError,
    TunnelError,
    VastNotFound,
    VastUnreachable,
)
from comfyfleet.remote.hostkeys import read_pins
from comfyfleet.remote.target import SshTarget
from comfyfleet.remote.tunnel import Backoff, Tunnel, TunnelGroup, pick_free_port, wait_http_ready
from comfyfleet.remote.tunnel_state import TunnelState, list_tunnels, read_state, write_state
from comfyfleet.util.clock import ManualClock, SystemClock

CLOCK = SystemClock()
FAST = Backoff(initial=0.05, factor=2.0, maximum=0.5)


def resolver(
    sandbox: RunningHost, target: SshTarget, calls: list[int] | None = None
) -> Callable[[], Awaitable[SshTarget]]:
    """resolve(): the host's current SSH port, as the caller would re-read it from Vast."""

    async def resolve() -> SshTarget:
        port = await asyncio.to_thread(lambda: sandbox.process.ssh_port)
        if calls is not None:
            calls.append(port)
        return dataclasses.replace(target, port=port)

    return resolve


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return await client.get(url)


async def get_when_back(url: str, timeout: float = 15.0) -> httpx.Response:
    """A client that retries while the tunnel reconnects (a browser reloading)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await get(url)
        except httpx.TransportError:
            assert asyncio.get_running_loop().time() < deadline, "tunnel never came back"
            await asyncio.sleep(0.05)


@pytest.fixture
async def comfy_ready(sandbox: RunningHost) -> int:
    port = sandbox.process.comfy_port
    assert await wait_http_ready(f"http://127.0.0.1:{port}", 30, interval=0.1)
    return port


async def test_http_and_websocket_reach_the_internal_comfy_port(
    sandbox: RunningHost, sandbox_target: SshTarget, comfy_ready: int
) -> None:
    async with Tunnel("31337", resolver(sandbox, sandbox_target), comfy_ready, clock=CLOCK) as t:
        await t.wait_up(15)
        assert t.state.status == "up" and t.state.url == t.url
        assert await wait_http_ready(t.url, 10)
        stats = (await get(t.url + "/system_stats")).json()
        assert "system" in stats and "devices" in stats
        ws_url = t.url.replace("http://", "ws://") + "/ws?clientId=tunnel-test"
        async with ws_connect(ws_url) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "status"
        # Without the token, the same request to the proxy port would be refused: the
        # tunnel reaches ComfyUI itself, behind the proxy.
        assert (
            await get(f"http://127.0.0.1:{sandbox.process.proxy_port}/system_stats")
        ).status_code == 401


async def test_it_comes_back_after_a_drop_on_the_same_local_port(
    sandbox: RunningHost, sandbox_target: SshTarget, comfy_ready: int, tmp_path: Path
) -> None:
    states: list[TunnelState] = []
    state_file = tmp_path / "tunnels" / "31337.json"
    tunnel = Tunnel(
        "31337",
        resolver(sandbox, sandbox_target),
        comfy_ready,
        clock=CLOCK,
        backoff=FAST,
        state_file=state_file,
        on_state=states.append,
    )
    await tunnel.start()
    try:
        await tunnel.wait_up(15)
        port = tunnel.local_port
        record = read_state(state_file)
        assert record is not None and record.pid == os.getpid() and not record.stale
        assert (record.state.status, record.state.local_port) == ("up", port)
        assert await asyncio.to_thread(sandbox.process.drop_ssh) >= 1
        resp = await get_when_back(tunnel.url + "/system_stats")
        assert resp.status_code == 200
        await tunnel.wait_up(15)
        assert tunnel.local_port == port
        assert tunnel.state.reconnects == 1
        assert [s.status for s in states][:4] == ["connecting", "up", "reconnecting", "up"]
        assert states[2].last_error == "connection lost"
        record = read_state(state_file)
        assert record is not None and record.state.reconnects == 1
    finally:
        await tunnel.aclose()
    assert tunnel.state.status == "closed" and states[-1].status == "closed"
    assert not state_file.exists()


async def test_it_follows_the_endpoint_when_ssh_moves(
    sandbox: RunningHost, sandbox_target: SshTarget, comfy_ready: int
) -> None:
    calls: list[int] = []
    resolve = resolver(sandbox, sandbox_target, calls)
    async with Tunnel("31337", resolve, comfy_ready, clock=CLOCK, backoff=FAST) as tunnel:
        await tunnel.wait_up(15)
        port, old_ssh = tunnel.local_port, tunnel.state.ssh_port
        new_ssh = await asyncio.to_thread(sandbox.process.move_ssh)
        assert (await get_when_back(tunnel.url + "/system_stats")).status_code == 200
        await tunnel.wait_up(15)
        assert (tunnel.local_port, tunnel.state.ssh_port) == (port, new_ssh)
        assert calls[0] == old_ssh and calls[-1] == new_ssh
    hosts = {pin.hosts for pin in read_pins(sandbox_target.known_hosts_path)}
    assert {(f"[127.0.0.1]:{old_ssh}",), (f"[127.0.0.1]:{new_ssh}",)} <= hosts


async def test_endpoint_check_moves_a_live_tunnel(
    sandbox: RunningHost, sandbox_target: SshTarget, comfy_ready: int
) -> None:
    # A second way in to the same instance (a TCP relay), then the endpoint switches to the
    # direct port while the old connection still works: the periodic check moves the tunnel.
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", sandbox.process.ssh_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    relay_port = server.sockets[0].getsockname()[1]
    endpoint = {"port": relay_port}

    async def resolve() -> SshTarget:
        return dataclasses.replace(sandbox_target, port=endpoint["port"])

    try:
        async with Tunnel(
            "31337", resolve, comfy_ready, clock=CLOCK, backoff=FAST, endpoint_check=0.1
        ) as tunnel:
            await tunnel.wait_up(15)
            assert tunnel.state.ssh_port == relay_port
            endpoint["port"] = sandbox.process.ssh_port
            for _ in range(100):
                if tunnel.state.ssh_port == endpoint["port"] and tunnel.state.status == "up":
                    break
                await asyncio.sleep(0.05)
            assert (tunnel.state.ssh_port, tunnel.state.status) == (endpoint["port"], "up")
            assert tunnel.state.reconnects == 1
            assert (await get_when_back(tunnel.url + "/system_stats")).status_code == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_a_lookup_that_fails_for_good_ends_the_tunnel(
    sandbox: RunningHost, sandbox_target: SshTarget, comfy_ready: int
) -> None:
    answers: list[Exception] = [VastUnreachable("vast is down"), VastNotFound("no such instance")]

    async def resolve() -> SshTarget:
        raise answers.pop(0)

    async with Tunnel("31337", resolve, comfy_ready, clock=CLOCK, backoff=FAST) as tunnel:
        with pytest.raises(VastNotFound):
            await tunnel.wait_up(10)  # the retryable error was retried, the other one ends it
        assert tunnel.state.status == "closed"
        assert tunnel.state.last_error == "no such instance"


async def test_an_unusable_key_ends_the_tunnel(
    sandbox_target: SshTarget, comfy_ready: int, tmp_path: Path
) -> None:
    target = dataclasses.replace(sandbox_target, key_path=tmp_path / "gone")

    async def resolve() -> SshTarget:
        return target

    async with Tunnel("31337", resolve, comfy_ready, clock=CLOCK, backoff=FAST) as tunnel:
        with pytest.raises(SshKeyError):
            await tunnel.wait_up(10)
        assert tunnel.state.status == "closed"


async def test_a_changed_host_key_ends_the_tunnel_for_good(
    sandbox: RunningHost, sandbox_target: SshTarget, comfy_ready: int
) -> None:
    states: list[TunnelState] = []
    tunnel = Tunnel(
        "31337",
        resolver(sandbox, sandbox_target),
        comfy_ready,
        clock=CLOCK,
        backoff=FAST,
        on_state=states.append,
    )
    async with tunnel:
        await tunnel.wait_up(15)
        await asyncio.to_thread(sandbox.process.rotate_host_key)  # drops connections too
        for _ in range(200):
            if tunnel.state.status == "closed":
                break
            await asyncio.sleep(0.05)
        assert tunnel.state.status == "closed"
        assert isinstance(tunnel.failure, HostKeyChanged)
        with pytest.raises(HostKeyChanged):
            await tunnel.wait_up(1)
    assert "changed" in (states[-1].last_error or "")
    with pytest.raises(httpx.TransportError):
        await get(tunnel.url + "/system_stats")


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from the far side")


@pytest.fixture
async def far_http() -> AsyncIterator[int]:
    """An HTTP server on the far side's loopback (the sshd runs on this machine)."""
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = pick_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_group_on_distinct_ports_through_sandbox_and_real_sshd(
    sandbox: RunningHost,
    sandbox_target: SshTarget,
    sshd: OpenSshd,
    sshd_target: SshTarget,
    comfy_ready: int,
    far_http: int,
    tmp_path: Path,
) -> None:
    async def sshd_resolve() -> SshTarget:
        return dataclasses.replace(sshd_target, port=sshd.port)

    state_dir = tmp_path / "tunnels"
    async with TunnelGroup(clock=CLOCK, state_dir=state_dir, backoff=FAST) as group:
        comfy = await group.open("31337", resolver(sandbox, sandbox_target), comfy_ready)
        plain = await group.open("sshd-1", sshd_resolve, far_http)
        await group.wait_all_up(15)
        assert comfy.local_port != plain.local_port
        assert {r.state.instance_ref for r in list_tunnels(state_dir)} == {"31337", "sshd-1"}
        assert (await get(comfy.url + "/system_stats")).status_code == 200
        assert (await get(plain.url + "/hello")).text == "hello from the far side"
        # A real sshd restarting (the instance rebooting its SSH server) drops the
        # connection; the tunnel comes back on the same local port.
        await asyncio.to_thread(sshd.stop)
        await asyncio.to_thread(sshd.start, sshd.port)
        assert (await get_when_back(plain.url + "/hello")).status_code == 200
        assert plain.state.reconnects == 1
        with pytest.raises(TunnelError):
            await group.open("again", sshd_resolve, far_http, local_port=plain.local_port)
    assert list_tunnels(state_dir, include_stale=True) == []


async def test_busy_local_port_and_unanswered_remote_port(
    sandbox: RunningHost, sandbox_target: SshTarget, tmp_path: Path
) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    busy = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TunnelError, match=f"local port {busy}"):
            await Tunnel(
                "31337", resolver(sandbox, sandbox_target), 1, clock=CLOCK, local_port=busy
            ).start()
    finally:
        server.close()
        await server.wait_closed()
    async with Tunnel(
        "31337", resolver(sandbox, sandbox_target), pick_free_port(), clock=CLOCK
    ) as tunnel:
        await tunnel.wait_up(15)  # the forward is up, but nothing listens behind it
        assert not await wait_http_ready(tunnel.url, 0.5, interval=0.1)


async def test_reconnects_back_off_on_the_given_clock() -> None:
    clock = ManualClock()
    calls: list[float] = []

    async def resolve() -> SshTarget:
        calls.append(clock.monotonic())
        raise VastUnreachable("vast is down")

    tunnel = Tunnel("1", resolve, 1, clock=clock, backoff=Backoff(1.0, 2.0, 4.0))
    await tunnel.start()
    try:
        await asyncio.sleep(0.05)
        assert calls == [0.0, 0.0]  # the first retry is immediate, then the clock decides
        for step in (1.0, 2.0, 4.0, 4.0):
            clock.advance(step)
            await asyncio.sleep(0.05)
        assert calls == [0.0, 0.0, 1.0, 3.0, 7.0, 11.0]
        assert (tunnel.state.status, tunnel.state.last_error) == ("connecting", "vast is down")
    finally:
        await tunnel.aclose()
    assert [Backoff().delay(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_stale_state_files_are_recognised(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = TunnelState("7", "up", 1.0, 8080, 18188)
    write_state(tmp_path / "7.json", state)
    text = json.loads((tmp_path / "7.json").read_text())
    text["pid"] = dead.pid
    (tmp_path / "7.json").write_text(json.dumps(text))
    write_state(tmp_path / "8.json", dataclasses.replace(state, instance_ref="8"))
    (tmp_path / "9.json").write_text("{half a file")
    assert [r.state.instance_ref for r in list_tunnels(tmp_path)] == ["8"]
    everything = list_tunnels(tmp_path, include_stale=True)
    assert [(r.state.instance_ref, r.stale) for r in everything] == [("7", True), ("8", False)]
    assert everything[0].state == state
