"""The built-in client of `comfyfleet ssh`: a terminal session in raw mode, and piped input."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from comfyfleet.remote.interactive import run_interactive
from comfyfleet.remote.ssh import connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

CHILD = """
import asyncio, json, sys, termios
from pathlib import Path
from comfyfleet.remote.interactive import interactive_shell
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

t = json.loads(sys.argv[1])
target = SshTarget(host=t["host"], port=t["port"], user=t["user"], key_path=Path(t["key"]),
                   known_hosts_path=Path(t["known"]), alias="cf-test", instance_ref="31337")
before = termios.tcgetattr(0)
code = asyncio.run(interactive_shell(target, clock=SystemClock()))
print(f"\\r\\nEXIT={code} RESTORED={before == termios.tcgetattr(0)}", flush=True)
"""


@pytest.mark.parametrize("peer", ["sandbox", "sshd"])
async def test_piped_input_and_exit_code(peer: str, request: pytest.FixtureRequest) -> None:
    target: SshTarget = request.getfixturevalue(f"{peer}_target")
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"echo piped $((1+1)); echo oops >&2; exit 4\n")
    os.close(write_fd)
    out: list[bytes] = []
    err: list[bytes] = []
    try:
        async with connect(target, clock=SystemClock()) as conn:
            code = await run_interactive(
                conn, None, stdin_fd=read_fd, write_out=out.append, write_err=err.append
            )
    finally:
        os.close(read_fd)
    assert code == 4
    assert b"".join(out) == b"piped 2\n" and b"".join(err) == b"oops\n"


async def test_input_from_a_file_and_a_large_pipe(
    sandbox_target: SshTarget, tmp_path: Path
) -> None:
    script = tmp_path / "script.sh"
    script.write_bytes(b"wc -c; exit 7\n")  # `comfyfleet ssh ID < script.sh`
    payload = b"z" * 3_000_000
    out: list[bytes] = []
    async with connect(sandbox_target, clock=SystemClock()) as conn:
        with script.open("rb") as fh:
            code = await run_interactive(
                conn, None, stdin_fd=fh.fileno(), write_out=out.append, write_err=out.append
            )
        assert (code, b"".join(out)) == (7, b"0\n")
        out.clear()
        read_fd, write_fd = os.pipe()
        writer = threading.Thread(target=_write_all, args=(write_fd, payload))
        writer.start()
        try:
            code = await run_interactive(
                conn, "wc -c", stdin_fd=read_fd, write_out=out.append, write_err=out.append
            )
        finally:
            writer.join(10)
            os.close(read_fd)
    assert (code, b"".join(out).strip()) == (0, str(len(payload)).encode())


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def read_until(master: int, needle: bytes, seen: bytearray, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, f"{needle!r} never came: {bytes(seen)[-500:]!r}"
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the client exited and closed the terminal
                return
            if not chunk:
                return
            seen.extend(chunk)


def test_terminal_session_in_raw_mode(sandbox_target: SshTarget) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    spec = {
        "host": sandbox_target.host,
        "port": sandbox_target.port,
        "user": sandbox_target.user,
        "key": str(sandbox_target.key_path),
        "known": str(sandbox_target.known_hosts_path),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        read_until(master, b"# ", seen)  # the remote prompt
        os.write(master, b"stty size; echo hi-$((6*7))\r")
        read_until(master, b"hi-42", seen)
        assert b"33 111" in seen  # the remote terminal has our window size
        # Ctrl+C must reach the remote shell (raw mode), not end the local client.
        started = time.monotonic()
        os.write(master, b"echo start-$((1+1)); sleep 30\r")
        read_until(master, b"start-2", seen)
        time.sleep(0.3)
        os.write(master, b"\x03")
        os.write(master, b"echo after-$((2+2))\r")
        read_until(master, b"after-4", seen)
        assert time.monotonic() - started < 20
        os.write(master, b"exit 5\r")
        read_until(master, b"<the end>", seen)  # everything, until the client exits
        assert child.wait(15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    assert b"EXIT=5 RESTORED=True" in seen
