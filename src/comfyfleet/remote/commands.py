"""Remote commands: quoting, a command builder, and running with captured or streamed output.

Every value that goes into a remote shell command passes through `quote` (shlex.quote), so a
hostile name (`x; rm -rf /`, `$(id)`, backticks, newlines) stays one literal argument. Build
commands with `RemoteCommand.of(program, *args)`; a plain `str` given to `run`/`stream` is
taken as a shell script and must only hold text comfyfleet wrote or the user typed as a
command. Secrets (tokens, keys) go through `stdin`, never into a command line, where `ps`
on the instance would show them.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import shlex
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

import asyncssh

from comfyfleet.errors import RemoteCommandFailed, RemoteTimeout, SshUnreachable, UsageError
from comfyfleet.remote.ssh import SshConnection, translate

Value = str | int | PurePath
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHOWN_COMMAND = 300  # characters of a command shown in an error
STDERR_TAIL = 2000  # characters of stderr kept in an error


def quote(value: Value) -> str:
    """One shell word for `value` (paths in POSIX form: the instance runs Linux)."""
    text = value.as_posix() if isinstance(value, PurePath) else str(value)
    return shlex.quote(text)


def join(argv: tuple[Value, ...] | list[Value]) -> str:
    return " ".join(quote(a) for a in argv)


@dataclass(frozen=True)
class RemoteCommand:
    """A program and its arguments, optionally run in a directory with extra environment."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def of(cls, program: Value, *args: Value) -> RemoteCommand:
        return cls(tuple(_text(a) for a in (program, *args)))

    def with_args(self, *args: Value) -> RemoteCommand:
        return RemoteCommand((*self.argv, *(_text(a) for a in args)), self.cwd, self.env)

    def in_dir(self, path: Value) -> RemoteCommand:
        return RemoteCommand(self.argv, _text(path), self.env)

    def with_env(self, env: Mapping[str, Value]) -> RemoteCommand:
        for name in env:
            if not _ENV_NAME.match(name):
                raise UsageError(f"not an environment variable name: {name!r}")
        extra = tuple((k, _text(v)) for k, v in env.items())
        return RemoteCommand(self.argv, self.cwd, (*self.env, *extra))

    def render(self) -> str:
        """The command as one line for a POSIX shell, every word quoted."""
        words = join(list(self.argv))
        if self.env:
            words = "env " + " ".join(quote(f"{k}={v}") for k, v in self.env) + " " + words
        if self.cwd is not None:
            words = f"cd -- {quote(self.cwd)} && {words}"
        return words

    def __str__(self) -> str:
        return self.render()


def _text(value: Value) -> str:
    return value.as_posix() if isinstance(value, PurePath) else str(value)


def render(cmd: RemoteCommand | str) -> str:
    return cmd.render() if isinstance(cmd, RemoteCommand) else cmd


def shown(command: str) -> str:
    """A command as errors show it: quoted already, cut to a readable length."""
    one_line = command if "\n" not in command else command.split("\n", 1)[0] + " …"
    if len(one_line) > SHOWN_COMMAND:
        return one_line[:SHOWN_COMMAND] + " …"
    return one_line


@dataclass(frozen=True)
class Completed:
    """A finished remote command: exit code (128+N when killed by signal N), output, command."""

    exit_code: int
    stdout: str
    stderr: str
    command: str

    def check(self) -> Completed:
        """Self when the command succeeded, else RemoteCommandFailed."""
        if self.exit_code != 0:
            raise failed(self.command, self.exit_code, self.stderr)
        return self


def failed(command: str, exit_code: int, stderr: str) -> RemoteCommandFailed:
    tail = stderr[-STDERR_TAIL:].strip()
    message = f"remote command failed with exit code {exit_code}: {shown(command)}"
    if tail:
        message += "\n" + "\n".join("  | " + line for line in tail.splitlines()[-15:])
    return RemoteCommandFailed(message, exit_code=exit_code, command=command, stderr_tail=tail)


def exit_code_of(status: int | None, sig: tuple[str, bool, str, str] | None) -> int | None:
    """The exit code as a shell reports it; None when the command's end was never seen."""
    if status is not None and status >= 0:
        return status
    if sig:
        number = getattr(signal, "SIG" + sig[0], None)
        return 128 + int(number) if number is not None else 255
    return None


def _as_bytes(data: bytes | str | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


async def run(
    conn: SshConnection,
    cmd: RemoteCommand | str,
    *,
    stdin: bytes | str | None = None,
    timeout: float | None = None,
    check: bool = False,
) -> Completed:
    """Run `cmd`, wait for it, return its exit code and output (decoded as UTF-8)."""
    text = render(cmd)
    try:
        result = await conn.asyncssh_connection.run(
            text, input=_as_bytes(stdin), timeout=timeout, encoding=None, check=False
        )
    except asyncssh.TimeoutError as exc:
        raise RemoteTimeout(
            f"remote command did not finish within {timeout:g} s on "
            f"{conn.target.describe()}: {shown(text)}"
        ) from exc
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, conn.target, "run a command") from exc
    code = exit_code_of(result.exit_status, result.exit_signal)
    if code is None:
        raise SshUnreachable(
            f"connection to {conn.target.describe()} lost while running: {shown(text)}"
        )
    done = Completed(code, _decode(result.stdout), _decode(result.stderr), text)
    return done.check() if check else done


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


class _Splitter:
    """Turns chunks of bytes into text pieces: whole lines (line mode) or decoded chunks."""

    def __init__(self, sink: Callable[[str], None], lines: bool) -> None:
        self.sink = sink
        self.lines = lines
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if not self.lines:
            if text:
                self.sink(text)
            return
        self.pending += text
        # A progress bar redraws with \r: it ends a piece as \n does.
        while (cut := _line_end(self.pending)) >= 0:
            self.sink(self.pending[: cut + 1])
            self.pending = self.pending[cut + 1 :]

    def close(self) -> None:
        rest = self.pending + self.decoder.decode(b"", final=True)
        self.pending = ""
        if rest:
            self.sink(rest)


def _line_end(text: str) -> int:
    ends = [i for i in (text.find("\n"), text.find("\r")) if i >= 0]
    return min(ends) if ends else -1


async def stream(
    conn: SshConnection,
    cmd: RemoteCommand | str,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    *,
    stdin: bytes | str | None = None,
    lines: bool = True,
) -> int:
    """Run `cmd`, handing its output to the callbacks as it comes; returns the exit code.

    `lines=True` delivers whole lines (a final partial line at the end), else decoded chunks.
    Cancelling the caller closes the session: the instance's sshd then hangs up the command.
    """
    text = render(cmd)
    try:
        proc = await conn.asyncssh_connection.create_process(text, encoding=None)
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, conn.target, "run a command") from exc
    finished = False
    try:
        data = _as_bytes(stdin)
        if data:
            proc.stdin.write(data)
        proc.stdin.write_eof()
        out, err = _Splitter(on_stdout, lines), _Splitter(on_stderr, lines)
        await asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err))
        completed = await proc.wait()
        finished = True
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, conn.target, "run a command") from exc
    finally:
        if not finished:
            proc.close()
    code = exit_code_of(completed.exit_status, completed.exit_signal)
    if code is None:
        raise SshUnreachable(
            f"connection to {conn.target.describe()} lost while running: {shown(text)}"
        )
    return code


async def _pump(reader: asyncssh.SSHReader[bytes], splitter: _Splitter) -> None:
    try:
        while chunk := await reader.read(65536):
            splitter.feed(chunk)
    finally:
        splitter.close()
