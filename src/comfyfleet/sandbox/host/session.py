"""One SSH session of a host: a command, a shell, or a shell on a PTY, run for real in bash.

A command runs as `bash -c CMD` with the instance environment, in `$WORKSPACE`; stdin, stdout
and stderr are streamed both ways with flow control, and the exit status (or the signal
that killed it) goes back to the client. A session with a PTY gets a real pseudo-terminal
(window size changes follow the client). Every session has its own process group: when the
client goes away first, the group gets SIGHUP (then SIGKILL), as a dropped sshd session would.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import Awaitable

import asyncssh

ChannelGone = (BrokenPipeError, ConnectionError, asyncssh.Error)
_SIGNALS = {s.name[3:]: s for s in signal.Signals if s.name.startswith("SIG") and "_" not in s.name}
_CLIENT_ENV = ("LANG", "LANGUAGE")


class ProcessGroups:
    """Process groups of live sessions, so the host can end them all when it stops."""

    def __init__(self) -> None:
        self.groups: set[int] = set()

    def kill_all(self, sig: signal.Signals = signal.SIGKILL) -> None:
        for pgid in list(self.groups):
            _signal_group(pgid, sig)


def session_env(base: dict[str, str], process: asyncssh.SSHServerProcess) -> dict[str, str]:
    env = dict(base)
    for key, value in (process.env or {}).items():
        key_s, value_s = _text(key), _text(value)
        if key_s in _CLIENT_ENV or key_s.startswith("LC_"):
            env[key_s] = value_s
    peer = process.get_extra_info("peername") or ("127.0.0.1", 0)
    local = process.get_extra_info("sockname") or ("127.0.0.1", 22)
    env["SSH_CLIENT"] = f"{peer[0]} {peer[1]} {local[1]}"
    env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {local[0]} {local[1]}"
    return env


async def run_session(
    process: asyncssh.SSHServerProcess,
    env: dict[str, str],
    cwd: str,
    rcfile: str,
    groups: ProcessGroups,
) -> None:
    """Serve one session request (exec, shell or PTY) until it ends, then close the channel."""
    if process.subsystem:
        process.stderr.write(f"subsystem request failed: {process.subsystem}\n".encode())
        process.exit(1)
        return
    command = process.command
    if process.term_type:
        argv = ["bash", "-c", command] if command else ["bash", "--rcfile", rcfile, "-i"]
        runner = _run_pty(process, argv, env, cwd)
    else:
        argv = ["bash", "-c", command] if command else ["bash"]
        runner = _run_pipes(process, argv, env, cwd)
    proc, finished = await runner
    groups.groups.add(proc.pid)
    closed = asyncio.ensure_future(process.channel.wait_closed())
    work = asyncio.ensure_future(finished)
    try:
        done, _ = await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            code = proc.returncode if proc.returncode is not None else await proc.wait()
            with contextlib.suppress(*ChannelGone):
                _report_exit(process, code)
        else:
            await _end_group(proc)
    finally:
        groups.groups.discard(proc.pid)
        for fut in (work, closed):
            fut.cancel()
        with contextlib.suppress(asyncio.CancelledError, *ChannelGone):
            await work


def _report_exit(process: asyncssh.SSHServerProcess, code: int) -> None:
    """Exit status, or exit-signal when a signal killed the command (as sshd reports it)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            process.exit_with_signal(signal.Signals(-code).name[3:])
            return
    process.exit(code)


async def _end_group(proc: asyncio.subprocess.Process) -> None:
    _signal_group(proc.pid, signal.SIGHUP)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 2.0)
    _signal_group(proc.pid, signal.SIGKILL)
    await proc.wait()


async def _run_pipes(
    process: asyncssh.SSHServerProcess, argv: list[str], env: dict[str, str], cwd: str
) -> tuple[asyncio.subprocess.Process, Awaitable[None]]:
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=pipe, stdout=pipe, stderr=pipe, cwd=cwd, env=env, start_new_session=True
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def pump_out(reader: asyncio.StreamReader, writer: asyncssh.SSHWriter) -> None:
        while chunk := await reader.read(65536):
            with contextlib.suppress(*ChannelGone):
                writer.write(chunk)
                await writer.drain()

    async def pump_in() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(*ChannelGone):
            while data := await _read_input(process, proc.pid, None):
                proc.stdin.write(data)
                await proc.stdin.drain()
        with contextlib.suppress(*ChannelGone):
            proc.stdin.close()

    async def finished() -> None:
        feeder = asyncio.create_task(pump_in())
        try:
            await asyncio.gather(
                pump_out(stdout, process.stdout),
                pump_out(stderr, process.stderr),
                proc.wait(),
            )
        finally:
            feeder.cancel()

    return proc, finished()


async def _run_pty(
    process: asyncssh.SSHServerProcess, argv: list[str], env: dict[str, str], cwd: str
) -> tuple[asyncio.subprocess.Process, Awaitable[None]]:
    master, slave = pty.openpty()
    _set_winsize(master, process.term_size)
    env = {**env, "TERM": process.term_type or "xterm"}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            preexec_fn=_take_terminal,
        )
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    output_done = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal is gone
            data = b""
        if not data:
            loop.remove_reader(master)
            output_done.set()
            return
        with contextlib.suppress(*ChannelGone):
            process.stdout.write(data)

    loop.add_reader(master, readable)

    async def pump_in() -> None:
        with contextlib.suppress(*ChannelGone):
            while data := await _read_input(process, proc.pid, master):
                await _write_all(master, data)

    async def finished() -> None:
        feeder = asyncio.create_task(pump_in())
        try:
            await proc.wait()
            with contextlib.suppress(TimeoutError):  # let the last output through
                await asyncio.wait_for(output_done.wait(), 0.5)
        finally:
            feeder.cancel()
            loop.remove_reader(master)
            os.close(master)

    return proc, finished()


async def _read_input(process: asyncssh.SSHServerProcess, pgid: int, master: int | None) -> bytes:
    """The client's next input, acting on the signals and window changes that arrive meanwhile."""
    while True:
        try:
            data: bytes = await process.stdin.read(65536)
            return data
        except asyncssh.TerminalSizeChanged as exc:
            if master is not None:
                _set_winsize(master, (exc.width, exc.height, exc.pixwidth, exc.pixheight))
        except asyncssh.SignalReceived as exc:
            sig = _SIGNALS.get(exc.signal)
            if sig is not None:
                _signal_group(pgid, sig)
        except asyncssh.BreakReceived:
            if master is not None:
                await _write_all(master, b"\x03")


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await asyncio.sleep(0.01)


def _set_winsize(fd: int, size: tuple[int, int, int, int]) -> None:
    width, height, pixwidth, pixheight = size
    if width and height:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


def _take_terminal() -> None:
    # In the child: lead a new session whose controlling terminal is the PTY on fd 0.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
