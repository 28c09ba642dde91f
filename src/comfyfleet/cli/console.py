"""Consoles: stdout carries results, stderr carries progress and errors."""

from __future__ import annotations

from rich.console import Console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def stdout_console() -> Console:
    """stdout; piped output gets a wide page so tables are not folded."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)
