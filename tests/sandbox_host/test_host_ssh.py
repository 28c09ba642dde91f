"""A host's SSH server: key auth, exec, environment, PTY, forwarding, SFTP, banner."""

from __future__ import annotations

import asyncio
import shlex

import asyncssh
import httpx
import pytest
from tests.sandbox_host.hostkit import TOKEN, RunningHost


async def test_banner_answers_at_once(host: RunningHost) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", host.process.ssh_port)
    try:
        banner = await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()
    assert banner.startswith(b"SSH-2.0-")


async def test_listed_key_logs_in_as_root(host: RunningHost) -> None:
    async with await host.connect() as conn:
        result = await conn.run("id -un; echo $HOME", check=True)
    lines = str(result.stdout).splitlines()
    assert lines[1] == str(host.root / "root")


async def test_unlisted_key_and_other_users_are_refused(host: RunningHost) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        await host.connect(client_keys=[host.other_key])
    with pytest.raises(asyncssh.PermissionDenied):
        await host.connect(username="ubuntu")
    with pytest.raises(asyncssh.PermissionDenied):
        await host.connect(client_keys=None, password="root")


async def test_authorized_keys_are_read_at_every_attempt(host: RunningHost) -> None:
    keys_file = host.spec.authorized_keys_file
    before = keys_file.read_bytes()
    try:
        keys_file.write_bytes(before + b"not a key line\n" + host.other_key.export_public_key())
        async with await host.connect(client_keys=[host.other_key]) as conn:
            assert (await conn.run("true")).exit_status == 0
        keys_file.write_bytes(host.other_key.export_public_key())
        with pytest.raises(asyncssh.PermissionDenied):
            await host.connect()
    finally:
        keys_file.write_bytes(before)
    async with await host.connect() as conn:
        assert (await conn.run("true")).exit_status == 0


async def test_exec_streams_and_returns_the_exit_status(host: RunningHost) -> None:
    async with await host.connect() as conn:
        failed = await conn.run("echo out; echo err >&2; exit 7")
        assert (failed.exit_status, failed.stdout, failed.stderr) == (7, "out\n", "err\n")
        echoed = await conn.run("tr a-z A-Z", input="hello over ssh\n" * 5000)
        assert echoed.stdout == "HELLO OVER SSH\n" * 5000
        killed = await conn.run("kill -TERM $$")
        assert killed.exit_signal is not None and killed.exit_signal[0] == "TERM"


async def test_exec_sees_the_image_environment(host: RunningHost) -> None:
    names = [
        "WORKSPACE",
        "DATA_DIRECTORY",
        "COMFYUI_ARGS",
        "OPEN_BUTTON_TOKEN",
        "WEB_PASSWORD",
        "CONTAINER_ID",
        "PUBLIC_IPADDR",
        "VAST_TCP_PORT_22",
        "VAST_TCP_PORT_8188",
        "GPU_COUNT",
        "FOO",
        "PIP_NO_INDEX",
    ]
    script = "pwd; " + "; ".join(f'printf "%s\\n" "${name}"' for name in names)
    async with await host.connect() as conn:
        result = await conn.run(script, check=True)
    cwd, *values = str(result.stdout).splitlines()
    env = dict(zip(names, values, strict=True))
    workspace = host.root / "workspace"
    assert cwd == str(workspace)
    assert env["WORKSPACE"] == str(workspace)
    assert env["DATA_DIRECTORY"] == f"{workspace}/"
    assert shlex.split(env["COMFYUI_ARGS"])[-2:] == ["--port", str(host.process.comfy_port)]
    assert env["OPEN_BUTTON_TOKEN"] == env["WEB_PASSWORD"] == TOKEN
    assert env["CONTAINER_ID"] == str(host.spec.instance_id)
    assert env["PUBLIC_IPADDR"] == "127.0.0.1"
    assert env["VAST_TCP_PORT_22"] == str(host.process.ssh_port)
    assert env["VAST_TCP_PORT_8188"] == str(host.process.proxy_port)
    assert env["GPU_COUNT"] == "1"
    assert env["FOO"] == "bar baz"
    assert env["PIP_NO_INDEX"] == "1"
    environment = (host.root / "etc" / "environment").read_text()
    assert f'WORKSPACE="{workspace}"' in environment.splitlines()


async def test_layout_is_the_images(host: RunningHost) -> None:
    comfy = host.root / "workspace" / "ComfyUI"
    for rel in ("models/checkpoints", "custom_nodes", "input", "output", "user/default/workflows"):
        assert (comfy / rel).is_dir(), rel
    assert (host.root / "venv" / "main" / "bin" / "python").exists()
    assert (host.root / "etc" / "portal.yaml").read_text().count("ComfyUI") == 2


async def test_pty_shell_is_interactive_with_the_venv(host: RunningHost) -> None:
    async with await host.connect() as conn:
        proc = await conn.create_process(term_type="xterm", term_size=(100, 30))
        proc.stdin.write("stty size; echo venv=$VIRTUAL_ENV; tty >/dev/null && echo has-tty\n")
        proc.stdin.write("exit 5\n")
        result = await asyncio.wait_for(proc.wait(), 10)
    output = str(result.stdout)
    assert "30 100" in output
    assert f"venv={host.root / 'venv' / 'main'}" in output
    assert "has-tty" in output
    assert result.exit_status == 5


async def test_window_size_changes_reach_the_terminal(host: RunningHost) -> None:
    async with await host.connect() as conn:
        proc = await conn.create_process(
            "sleep 0.3; stty size", term_type="xterm", term_size=(80, 24)
        )
        proc.change_terminal_size(132, 43)
        result = await asyncio.wait_for(proc.wait(), 10)
    assert "43 132" in str(result.stdout)


async def test_local_forward_reaches_the_internal_comfy_port(host: RunningHost) -> None:
    await asyncio.to_thread(host.wait_comfy)
    async with await host.connect() as conn:
        listener = await conn.forward_local_port(
            "127.0.0.1", 0, "127.0.0.1", host.process.comfy_port
        )
        async with httpx.AsyncClient() as client:
            # No token: the internal port is behind the proxy, not behind auth.
            resp = await client.get(f"http://127.0.0.1:{listener.get_port()}/system_stats")
        listener.close()
    assert resp.status_code == 200
    assert resp.json()["system"]["comfyui_version"]


async def test_forwarding_is_limited_to_loopback(host: RunningHost) -> None:
    async with await host.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_connection("192.0.2.1", 80)


async def test_sftp_reads_and_writes_host_files(host: RunningHost) -> None:
    target = host.root / "workspace" / "ComfyUI" / "input" / "sent.txt"
    async with await host.connect() as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(str(target), "wb") as fh:
            await fh.write(b"over sftp")
        assert await sftp.getcwd() == str(host.root / "root")
    assert target.read_bytes() == b"over sftp"


def test_host_key_is_kept_in_the_root(host: RunningHost) -> None:
    key_file = host.root / "etc" / "ssh" / "ssh_host_ed25519_key"
    key = asyncssh.read_private_key(str(key_file))
    assert key.get_fingerprint("sha256") == host.process.host_key_fingerprint
    assert key_file.stat().st_mode & 0o077 == 0
