"""More of what an instance can tell over SSH: memory, the driver's CUDA, the lines of
ComfyUI's log that match a pattern, and ComfyUI's persisted queue files (listed, removed).

Parsers are pure functions (tested without an instance); each query is one round trip.
Persisted queue files are exactly `user/queue.db`, `queue.db-wal` and `queue.db-shm` of the
ComfyUI folder: the removal command names each file, so nothing else (`user/comfyui.db`, an
unrelated assets database) can ever match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from comfyfleet.errors import LayoutNotDetected, RemoteError
from comfyfleet.remote.commands import RemoteCommand, quote, run
from comfyfleet.remote.layout import SUPERVISOR_RESTART, InstanceLayout
from comfyfleet.remote.parsing import split_sections
from comfyfleet.remote.ssh import SshConnection

_MARK = "@@comfyfleet-section@@"
QUEUE_FILES = ("queue.db", "queue.db-wal", "queue.db-shm")
_DRIVER = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_CUDA = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")


@dataclass(frozen=True)
class MemInfo:
    """Memory in bytes: `/proc/meminfo`, or the container's cgroup limit when that is lower
    (`limited`): a container's /proc/meminfo shows the whole machine."""

    total: int
    available: int
    limited: bool = False


@dataclass(frozen=True)
class DriverInfo:
    """What `nvidia-smi`'s header says: the driver and the highest CUDA it supports."""

    driver_version: str | None
    cuda_version: str | None


@dataclass(frozen=True)
class HostFacts:
    memory: MemInfo | None
    driver: DriverInfo | None  # None: no nvidia-smi


def parse_meminfo(text: str) -> MemInfo | None:
    """MemTotal and MemAvailable (MemFree + Cached on old kernels) of `/proc/meminfo`."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            scale = 1024 if len(fields) > 1 and fields[1].lower() == "kb" else 1
            values[name.strip()] = int(fields[0]) * scale
    if "MemTotal" not in values:
        return None
    available = values.get("MemAvailable")
    if available is None:
        available = values.get("MemFree", 0) + values.get("Cached", 0)
    return MemInfo(values["MemTotal"], available)


# cgroup v2 files first, then v1 (`memory.stat` gives the page cache the kernel can drop).
_CGROUP_FILES = (
    "memory.max",
    "memory.current",
    "memory/memory.limit_in_bytes",
    "memory/memory.usage_in_bytes",
)
_CGROUP_SCRIPT = (
    f"for f in {' '.join(_CGROUP_FILES)}; do "
    'v=$(cat "/sys/fs/cgroup/$f" 2>/dev/null) && echo "$f $v"; done; '
    "grep -hE '^(total_)?inactive_file ' /sys/fs/cgroup/memory.stat "
    "/sys/fs/cgroup/memory/memory.stat 2>/dev/null"
)


def within_cgroup(memory: MemInfo | None, text: str) -> MemInfo | None:
    """`memory` bounded by the cgroup limit `_CGROUP_SCRIPT` printed, when one is set and is
    below the machine's total: available = limit - (usage - inactive page cache)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" ")
        if value.strip().isdigit():
            values.setdefault(name, int(value.strip()))
    limit = values.get("memory.max", values.get("memory/memory.limit_in_bytes"))
    usage = values.get("memory.current", values.get("memory/memory.usage_in_bytes"))
    if memory is None or limit is None or usage is None or limit >= memory.total:
        return memory
    cache = values.get("inactive_file", values.get("total_inactive_file", 0))
    used = max(0, usage - cache)
    return MemInfo(limit, max(0, min(limit - used, memory.available)), limited=True)


def parse_driver(text: str) -> DriverInfo | None:
    """The driver and CUDA versions from `nvidia-smi`'s table header; None without one."""
    driver, cuda = _DRIVER.search(text), _CUDA.search(text)
    if driver is None and cuda is None:
        return None
    return DriverInfo(driver.group(1) if driver else None, cuda.group(1) if cuda else None)


async def host_facts(conn: SshConnection) -> HostFacts:
    """Memory (within the container's cgroup limit) and the driver's CUDA, in one round trip."""
    script = (
        f"cat /proc/meminfo 2>/dev/null; echo {_MARK}; nvidia-smi 2>/dev/null | head -n 8; "
        f"echo {_MARK}; {_CGROUP_SCRIPT}"
    )
    done = await run(conn, script, timeout=60)
    memory, smi, cgroup = split_sections(done.stdout, _MARK, 3)
    return HostFacts(within_cgroup(parse_meminfo(memory), cgroup), parse_driver(smi))


async def grep_log(conn: SshConnection, log_file: PurePosixPath, pattern: str) -> list[str] | None:
    """`grep -E PATTERN LOG`: the matching lines; None when the log file does not exist."""
    script = 'test -f "$2" || exit 3; grep -E -e "$1" -- "$2"; exit 0'
    done = await run(conn, RemoteCommand.of("sh", "-c", script, "grep-log", pattern, log_file))
    if done.exit_code == 3:
        return None
    done.check()
    return done.stdout.splitlines()


def queue_file_paths(comfy_dir: PurePosixPath) -> list[PurePosixPath]:
    return [comfy_dir / "user" / name for name in QUEUE_FILES]


async def present_queue_files(conn: SshConnection, comfy_dir: PurePosixPath) -> list[PurePosixPath]:
    """Which persisted queue files exist in ComfyUI's `user/` folder."""
    script = 'for f in "$@"; do [ -e "$f" ] && printf "%s\\n" "$f"; done; exit 0'
    paths = queue_file_paths(comfy_dir)
    done = await run(conn, RemoteCommand.of("sh", "-c", script, "queue-files", *paths), check=True)
    present = {line.strip() for line in done.stdout.splitlines()}
    return [p for p in paths if str(p) in present]


def purge_restart_command(layout: InstanceLayout, files: Sequence[PurePosixPath]) -> str:
    """A command that stops ComfyUI, removes `files` (persisted queue files only) and starts
    it again; with supervisor it is stopped before the files go, so nothing writes them back."""
    allowed = set(queue_file_paths(layout.comfy_dir))
    for path in files:
        if path not in allowed:
            raise RemoteError(f"refusing to remove {path}: not a persisted queue file")
    if layout.restart_command is None:
        raise LayoutNotDetected(
            "no way to restart ComfyUI is known on the instance",
            hint="give the venv with --venv, or the command with --restart-command",
        )
    remove = "rm -f -- " + " ".join(quote(p) for p in files)
    if layout.restart_command == SUPERVISOR_RESTART:
        return f"supervisorctl stop comfyui; {remove} && supervisorctl start comfyui"
    return f"{remove} && {layout.restart_command}"
