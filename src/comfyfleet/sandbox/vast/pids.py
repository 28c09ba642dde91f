"""Processes by pid, checked before any signal: is it alive, and is it really ours?

A pid recorded in a state file may have been reused by an unrelated process after a crash,
so nothing is killed unless its command line names the expected module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from comfyfleet.util.processes import pid_alive


def command_line(pid: int) -> str | None:
    """The process's command line, or None when it cannot be read."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return None
    if sys.platform == "win32":
        query = ["wmic", "process", "where", f"ProcessId={pid}", "get", "CommandLine"]
    else:
        query = ["ps", "-o", "command=", "-p", str(pid)]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    if sys.platform == "win32":
        text = "\n".join(text.splitlines()[1:]).strip()
    return text or None


def is_ours(pid: int, *markers: str) -> bool:
    """Alive, and its command line holds every marker (e.g. "comfyfleet", "sandbox")."""
    if not pid_alive(pid):
        return False
    line = command_line(pid)
    return line is not None and all(m in line for m in markers)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def terminate(pid: int, *markers: str, timeout: float = 10.0) -> bool:
    """Stop a verified process (SIGTERM, then SIGKILL); True when it is gone."""
    if not is_ours(pid, *markers):
        return not pid_alive(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_gone(pid, timeout):
        return True
    if is_ours(pid, *markers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    return wait_gone(pid, timeout)
