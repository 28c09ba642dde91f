"""A tunnel's observable state, and the small JSON file other processes read it from.

The file (path chosen by the caller, e.g. `<state dir>/tunnels/<instance>.json`) is rewritten
atomically on every change and removed on a clean close. It carries the pid of the process
holding the tunnel, so a file left by a crashed process is recognised as stale
(`TunnelRecord.stale`): `comfyfleet ls` shows open tunnels, idle detection counts them as use.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from comfyfleet.remote.target import safe_file_name
from comfyfleet.util.processes import pid_alive

TunnelStatus = Literal["connecting", "up", "reconnecting", "closed"]
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TunnelState:
    """What a tunnel is doing now; `since` is the clock's now() when `status` began."""

    instance_ref: str
    status: TunnelStatus
    since: float
    local_port: int
    remote_port: int
    reconnects: int = 0
    last_error: str | None = None
    ssh_host: str | None = None  # the endpoint in use (or last tried)
    ssh_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"


@dataclass(frozen=True)
class TunnelRecord:
    """A state file as read back: the state, and the pid of the process that wrote it."""

    state: TunnelState
    pid: int
    path: Path

    @property
    def stale(self) -> bool:
        """The writing process is gone (crashed or killed before it could remove the file)."""
        return not pid_alive(self.pid)


def write_state(path: Path, state: TunnelState) -> None:
    """Write the state file atomically (0600; its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": FORMAT_VERSION, "pid": os.getpid(), **asdict(state)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def read_state(path: Path) -> TunnelRecord | None:
    """A state file, or None when it is missing, half-written or of another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("version", None) != FORMAT_VERSION:
            return None
        pid = int(data.pop("pid"))
        return TunnelRecord(TunnelState(**data), pid, path)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def list_tunnels(folder: Path, *, include_stale: bool = False) -> list[TunnelRecord]:
    """The tunnels recorded in `folder` (`*.json`), live ones only unless asked otherwise."""
    records = [r for p in sorted(folder.glob("*.json")) if (r := read_state(p)) is not None]
    return [r for r in records if include_stale or not r.stale]


def tunnel_state_file(folder: Path, instance_ref: str) -> Path:
    """Where a tunnel to `instance_ref` records its state in `folder`."""
    return folder / f"{safe_file_name(instance_ref)}.json"
