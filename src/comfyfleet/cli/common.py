"""What every command shares: settings from flags, the async runner, errors to exit codes.

Heavy modules (httpx, rich, pydantic) are imported inside functions so `comfyfleet --help`
starts fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from comfyfleet.config import Settings

T = TypeVar("T")

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a terminated command


@dataclass
class GlobalOptions:
    """Options given before the command (`comfyfleet --profile sandbox ls`)."""

    profile: str | None = None
    config: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)

    def settings(self, **command_flags: Any) -> Settings:
        """Settings with flags > env > file > defaults; `None` flags are left out."""
        from pathlib import Path

        from comfyfleet.config import load_settings

        flags: dict[str, Any] = dict(self.flags)
        if self.profile:
            flags["profile"] = self.profile
        for key, value in command_flags.items():
            if value is None:
                continue
            group, _, name = key.partition("__")
            if name:
                flags.setdefault(group, {})[name] = value
            else:
                flags[key] = value
        return load_settings(flags, config_file=Path(self.config) if self.config else None)


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def error_payload(exc: BaseException) -> dict[str, Any]:
    from comfyfleet.errors import ComfyfleetError

    if isinstance(exc, ComfyfleetError):
        return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
    return {"type": type(exc).__name__, "message": str(exc), "hint": None}


def progress_line(text: str) -> None:
    """One progress line on stderr, flushed at once (a service's `on_line`)."""
    sys.stderr.write(text.rstrip("\n") + "\n")
    sys.stderr.flush()


def emit_json(data: Mapping[str, Any] | list[Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def run_async(main: Callable[[], Awaitable[T]], *, as_json: bool = False) -> T:
    """Run one coroutine at the CLI edge; map comfyfleet errors to messages and exit codes."""
    import asyncio

    from comfyfleet.errors import ComfyfleetError

    try:
        return asyncio.run(_as_coroutine(main))
    except ComfyfleetError as exc:
        fail(exc, as_json=as_json)
    except (KeyboardInterrupt, _Terminated) as exc:
        word, code = (
            ("terminated", EXIT_TERMINATED)
            if isinstance(exc, _Terminated)
            else ("interrupted", EXIT_INTERRUPTED)
        )
        if as_json:
            emit_json({"error": {"type": word.capitalize(), "message": word, "hint": None}})
        else:
            sys.stderr.write(f"{word}\n")
        raise typer.Exit(code) from None


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived: the command was cancelled as Ctrl+C cancels it."""


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    # SIGTERM (kill, systemd, timeout) and SIGHUP (a closed terminal) cancel the command the
    # way Ctrl+C does, so its cleanup runs: tunnels close, remote prompts are interrupted.
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    caught: list[int] = []

    def cancel(signum: int) -> None:
        caught.append(signum)
        task.cancel()

    installed = []
    for signum in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)):
        if signum is None:
            continue
        try:
            loop.add_signal_handler(signum, cancel, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
            continue
        installed.append(signum)
    try:
        return await main()
    except asyncio.CancelledError:
        if caught:
            raise _Terminated() from None
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def fail(exc: BaseException, *, as_json: bool = False) -> NoReturn:
    """Print the error (JSON on stdout with --json, else readable on stderr) and exit."""
    from comfyfleet.errors import ComfyfleetError

    code = exc.exit_code if isinstance(exc, ComfyfleetError) else 1
    if as_json:
        emit_json({"error": error_payload(exc)})
    else:
        from rich.console import Console
        from rich.text import Text

        console = Console(stderr=True, highlight=False, soft_wrap=True)
        console.print(Text.assemble(("error: ", "bold red"), getattr(exc, "message", str(exc))))
        hint = getattr(exc, "hint", None)
        if hint:
            console.print(Text.assemble(("hint: ", "yellow"), hint))
    raise typer.Exit(code)


def confirm(question: str, *, as_json: bool = False, default: bool = False) -> bool:
    """Ask `question` (y/n) on standard input. When input ends unanswered (a script, a closed
    pipe) that is a usage error (exit 2) saying to pass --yes, not a bare "Aborted!"."""
    try:
        return typer.confirm(question, default=default, err=True)
    except typer.Abort:
        from comfyfleet.errors import UsageError

        fail(
            UsageError(
                f'no answer to "{question}" (standard input ended)',
                hint="pass --yes to go ahead without asking",
            ),
            as_json=as_json,
        )
