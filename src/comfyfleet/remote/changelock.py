"""Changes to one instance's ComfyUI take turns, whichever machine or process makes them.

    async with change_lock(conn, layout, "nodes install ComfyUI-KJNodes", wait=900) as lock:
        ...  # install, pip, restart: no other comfyfleet change runs meanwhile

The lock is flock(1) on `<workspace>/.comfyfleet-change.lock`, taken by a shell on its own
SSH channel that then `exec`s a `cat` waiting on the channel's standard input: the lock lasts
exactly as long as the channel, so a client that crashes or loses its connection releases it
when sshd hangs up. The holder writes what it does into `<lock>.who`, which a command that
has to wait shows (`on_wait`) and names in `InstanceBusy` when waiting would take too long.

Not re-entrant: hold it around one step (an install, a pip run), never around code that takes
it again. An instance without flock(1) runs the change unlocked and says so (`locked=False`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

import asyncssh

from comfyfleet.errors import InstanceBusy, RemoteCommandFailed, SshUnreachable
from comfyfleet.remote.commands import STDERR_TAIL, RemoteCommand, render
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.ssh import SshConnection, translate

LOCK_NAME = ".comfyfleet-change.lock"
_BUSY_EXIT = 75

# $1 lock file, $2 seconds to wait, $3 what the holder does. Prints "busy WHO" when it has to
# wait, then "held" (or "unlocked" without flock) once the change may start.
_HOLD = r"""
exec 9>>"$1" || exit 73
if ! command -v flock >/dev/null 2>&1; then echo unlocked; exec cat >/dev/null; fi
if ! flock -n 9; then
  printf 'busy %s\n' "$(head -n 1 -- "$1.who" 2>/dev/null)"
  flock -w "$2" 9 || { printf 'holder %s\n' "$(head -n 1 -- "$1.who" 2>/dev/null)"; exit 75; }
fi
printf '%s\n' "$3" >"$1.who"
echo held
exec cat >/dev/null
"""


@dataclass(frozen=True)
class ChangeLock:
    """The lock this block holds: `locked` is False on an instance without flock(1)."""

    path: PurePosixPath
    locked: bool
    waited_for: str | None  # what the previous holder was doing, if we had to wait


def lock_path(layout: InstanceLayout) -> PurePosixPath:
    return layout.workspace / LOCK_NAME


def holder_text(what: str) -> str:
    """How a waiting command sees us: the step, user@machine, pid."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return " ".join(f"{what} (by {user}@{socket.gethostname()}, pid {os.getpid()})".split())


@contextlib.asynccontextmanager
async def change_lock(
    conn: SshConnection,
    layout: InstanceLayout,
    what: str,
    *,
    wait: float,
    on_wait: Callable[[str], None] | None = None,
) -> AsyncIterator[ChangeLock]:
    """Hold the instance's change lock for the block; waits up to `wait` real seconds.

    Raises InstanceBusy (naming the holder) when the wait runs out, SshUnreachable when the
    connection drops before the lock is taken.
    """
    path = lock_path(layout)
    cmd = RemoteCommand.of(
        "sh", "-c", _HOLD, "comfyfleet-change-lock", path, max(0, round(wait)), holder_text(what)
    )
    text = render(cmd)
    try:
        proc = await conn.asyncssh_connection.create_process(text, encoding="utf-8")
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, conn.target, "take the instance's change lock") from exc
    try:
        lock = await _acquired(proc, conn, path, wait, on_wait)
        yield lock
    finally:
        proc.stdin.write_eof()
        proc.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(proc.wait_closed(), 10)


async def _acquired(
    proc: asyncssh.SSHClientProcess[str],
    conn: SshConnection,
    path: PurePosixPath,
    wait: float,
    on_wait: Callable[[str], None] | None,
) -> ChangeLock:
    waited_for: str | None = None
    while True:
        try:
            line = await proc.stdout.readline()
        except (asyncssh.Error, OSError) as exc:
            raise translate(exc, conn.target, "take the instance's change lock") from exc
        word, _, rest = line.strip().partition(" ")
        if word == "busy":
            waited_for = rest or "another comfyfleet command"
            if on_wait is not None:
                on_wait(f"waiting for another change on this instance to finish: {waited_for}")
        elif word == "holder":
            waited_for = rest or waited_for or "another comfyfleet command"
        elif word in ("held", "unlocked"):
            return ChangeLock(path, word == "held", waited_for)
        elif not line:
            break
    done = await proc.wait()
    if done.exit_status == _BUSY_EXIT:
        raise InstanceBusy(
            f"instance {conn.target.describe()} is being changed by another comfyfleet "
            f"command: {waited_for}; waited {wait:g} s",
            holder=waited_for or "",
            hint="let that command finish and retry, or wait longer with "
            "COMFYFLEET_REMOTE__CHANGE_WAIT / [remote] change_wait",
        )
    if done.exit_status is None:
        raise SshUnreachable(
            f"connection to {conn.target.describe()} lost while taking its change lock"
        )
    stderr = done.stderr if isinstance(done.stderr, str) else ""
    raise RemoteCommandFailed(
        f"cannot take the change lock {path} on {conn.target.describe()}",
        exit_code=done.exit_status,
        command="sh -c <change lock>",
        stderr_tail=stderr[-STDERR_TAIL:],
        hint="check that the workspace folder on the instance exists and is writable",
    )
