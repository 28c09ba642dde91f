"""`comfyfleet ssh ID [-- CMD]`: OpenSSH when it is installed, else the built-in client.

`openssh_command` builds the argv for the real `ssh` (through the generated ssh config, or
with every option spelled out). `interactive_shell` is the fallback for machines without an
`ssh` binary: asyncssh with a PTY when stdin is a terminal (raw mode, window size changes
followed on POSIX), plain pipes otherwise (`comfyfleet ssh ID < script.sh`).

Windows: the console cannot be put in raw mode the POSIX way, so the built-in client reads
stdin line by line there (keys such as arrows and Ctrl+C reach the remote shell only after
Enter) and does not follow window resizes; Windows 10+ ships OpenSSH, which is preferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import asyncssh

from comfyfleet.errors import SshUnreachable
from comfyfleet.remote.commands import exit_code_of
from comfyfleet.remote.ssh import SshConnection, connect, translate
from comfyfleet.remote.sshconfig import config_path
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import Clock

WINDOWS = sys.platform == "win32"


def find_ssh() -> str | None:
    """The OpenSSH client on PATH, or None."""
    return shutil.which("ssh")


def openssh_command(
    target: SshTarget,
    config_file: Path | None,
    remote_cmd: str | Sequence[str] | None = None,
    *,
    tty: bool = False,
    ssh: str = "ssh",
) -> list[str]:
    """argv for OpenSSH's client.

    With `config_file` (the generated per-instance file, or a config that Includes it) the
    target is reached by its alias; without, every option is given on the command line
    (same key, same per-instance known_hosts, `accept-new`). A sequence `remote_cmd` is
    quoted word by word; a string is passed as a shell command line.
    """
    argv = [ssh]
    if config_file is not None:
        argv += ["-F", str(config_file)]
        destination = target.alias
    else:
        argv += ["-p", str(target.port)]
        if target.key_path is not None:
            argv += ["-i", str(target.key_path), "-o", "IdentitiesOnly=yes"]
        argv += [
            "-o",
            f"UserKnownHostsFile={config_path(target.known_hosts_path)}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "HashKnownHosts=no",
        ]
        destination = f"{target.user}@{target.host}"
    if tty:
        argv.append("-t")
    argv += ["--", destination]
    if remote_cmd is not None:
        argv.append(remote_cmd if isinstance(remote_cmd, str) else shlex.join(remote_cmd))
    return argv


async def interactive_shell(target: SshTarget, *, clock: Clock, command: str | None = None) -> int:
    """A login shell (or `command`) on the instance on this terminal; returns its exit code."""
    async with connect(target, clock=clock) as conn:
        return await run_interactive(conn, command)


async def run_interactive(
    conn: SshConnection,
    command: str | None = None,
    *,
    stdin_fd: int | None = None,
    write_out: Callable[[bytes], None] | None = None,
    write_err: Callable[[bytes], None] | None = None,
) -> int:
    """Connect this process's stdin/stdout (or the given ones) to a remote session."""
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    out = write_out or _writer(sys.stdout)
    err = write_err or _writer(sys.stderr)
    tty = os.isatty(fd)
    size = _terminal_size(fd)
    try:
        proc = await conn.asyncssh_connection.create_process(
            command,
            term_type=os.environ.get("TERM", "xterm-256color") if tty else None,
            term_size=size if tty else None,
            encoding=None,
        )
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, conn.target, "open a session") from exc
    with _raw_mode(fd, tty), _follow_resizes(proc, fd, tty):
        feeder = _feed_stdin(proc, fd)
        try:
            await asyncio.gather(_copy(proc.stdout, out), _copy(proc.stderr, err))
            done = await proc.wait()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
    code = exit_code_of(done.exit_status, done.exit_signal)
    if code is None:
        raise SshUnreachable(f"connection to {conn.target.describe()} lost")
    return code


def _writer(stream: TextIO) -> Callable[[bytes], None]:
    buffer = stream.buffer

    def write(data: bytes) -> None:
        buffer.write(data)
        buffer.flush()

    return write


async def _copy(reader: asyncssh.SSHReader[bytes], write: Callable[[bytes], None]) -> None:
    while chunk := await reader.read(65536):
        write(chunk)


def _terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return (80, 24)
    return (size.columns, size.lines)


@contextlib.contextmanager
def _raw_mode(fd: int, tty: bool) -> Iterator[None]:
    if not tty or WINDOWS:
        yield
        return
    import termios
    import tty as ttymod

    saved = termios.tcgetattr(fd)
    ttymod.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _follow_resizes(proc: asyncssh.SSHClientProcess[bytes], fd: int, tty: bool) -> Iterator[None]:
    if not tty or not hasattr(signal, "SIGWINCH"):
        yield
        return
    loop = asyncio.get_running_loop()

    def resized() -> None:
        cols, rows = _terminal_size(fd)
        with contextlib.suppress(asyncssh.Error, OSError):
            proc.change_terminal_size(cols, rows)

    loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


def _feed_stdin(proc: asyncssh.SSHClientProcess[bytes], fd: int) -> asyncio.Task[None]:
    """Copy `fd` to the session's stdin until EOF (with flow control); cancel to stop."""
    kind = os.fstat(fd).st_mode
    if stat.S_ISREG(kind):
        reader = _read_file
    elif WINDOWS:
        reader = _read_in_thread  # Windows consoles cannot be watched by the event loop
    else:
        reader = _read_when_ready
    return asyncio.ensure_future(_pump(proc, reader(fd)))


async def _pump(proc: asyncssh.SSHClientProcess[bytes], chunks: AsyncIterator[bytes]) -> None:
    try:
        async for data in chunks:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.write_eof()
    except (asyncssh.Error, OSError):
        return  # the session is gone: nothing left to feed


async def _read_when_ready(fd: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _set_once, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        data = _read(fd)
        if not data:
            return
        yield data


async def _read_file(fd: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while data := await loop.run_in_executor(None, _read, fd):
        yield data


async def _read_in_thread(fd: int) -> AsyncIterator[bytes]:
    # A daemon thread: a read blocked on the console must not hold the program at exit.
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)

    def pump() -> None:
        while True:
            data = _read(fd)
            asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            if not data:
                return

    threading.Thread(target=pump, name="ssh-stdin", daemon=True).start()
    while data := await queue.get():
        yield data


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
