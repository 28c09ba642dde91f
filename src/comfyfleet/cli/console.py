"""Consoles: stdout carries results, stderr carries progress and errors."""

from __future__ import annotations

from rich.console import Console


def stderr_console() -> Console:
    """stderr; when it is not a terminal (a log file, a pipe) lines are never folded, so a path
    or URL in a message stays whole."""
    console = Console(stderr=True, highlight=False)
    return console if console.is_terminal else Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """stdout; piped output gets a wide page so tables are not folded."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)
