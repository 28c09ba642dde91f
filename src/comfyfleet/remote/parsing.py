"""Parsers of what instance tools print: nvidia-smi CSV queries, `df -P`, `ps`.

Pure functions from text to typed values, so every format is tested without an instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from comfyfleet.errors import RemoteError

# Field orders of the queries manage.py runs; free-text fields last (they may hold commas).
GPU_FIELDS = "index,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,name"
APP_FIELDS = "gpu_uuid,pid,used_memory,process_name"
PS_FORMAT = "pid=,ppid=,user=,pcpu=,pmem=,rss=,etime=,args="


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str
    used_mib: int | None
    is_comfy: bool


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it; None where it says [N/A] / [Not Supported]."""

    index: int
    name: str
    uuid: str
    utilization_pct: int | None
    memory_used_mib: int | None
    memory_total_mib: int | None
    temperature_c: int | None
    processes: tuple[GpuProcess, ...]


@dataclass(frozen=True)
class DiskUsage:
    """`df -P` for one path: sizes in bytes, the file system and where it is mounted."""

    path: str
    filesystem: str
    total_bytes: int
    used_bytes: int
    available_bytes: int
    used_pct: int
    mounted_on: str


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    user: str
    cpu_pct: float
    mem_pct: float
    rss_kib: int
    elapsed: str  # ps's etime: [[dd-]hh:]mm:ss
    command: str
    is_comfy: bool


def _number(text: str) -> int | None:
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        return None  # [N/A], [Not Supported], [Unknown Error]


def parse_gpus(
    gpu_csv: str, apps_csv: str, comfy_pids: frozenset[int] = frozenset()
) -> list[GpuInfo]:
    """`--query-gpu=GPU_FIELDS` and `--query-compute-apps=APP_FIELDS` (csv,noheader,nounits).

    `comfy_pids`: the pids of ComfyUI's processes, to mark its GPU processes.
    """
    procs: dict[str, list[GpuProcess]] = {}
    for line in apps_csv.splitlines():
        cells = [c.strip() for c in line.split(",", 3)]
        if len(cells) != 4 or _number(cells[1]) is None:
            continue
        uuid, pid, used, name = cells
        procs.setdefault(uuid, []).append(
            GpuProcess(int(pid), name, _number(used), int(pid) in comfy_pids)
        )
    gpus: list[GpuInfo] = []
    for line in gpu_csv.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",", 6)]
        index = _number(cells[0]) if cells else None
        if len(cells) != 7 or index is None:
            raise RemoteError(f"unexpected nvidia-smi output: {line!r}")
        uuid = cells[1]
        gpus.append(
            GpuInfo(
                index=index,
                name=cells[6],
                uuid=uuid,
                utilization_pct=_number(cells[2]),
                memory_used_mib=_number(cells[3]),
                memory_total_mib=_number(cells[4]),
                temperature_c=_number(cells[5]),
                processes=tuple(procs.get(uuid, ())),
            )
        )
    return gpus


def parse_df(path: str, output: str) -> DiskUsage | None:
    """One path's `df -P -k` output (header optional); None when df printed nothing for it."""
    for line in output.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[1].isdigit():
            continue  # the header, or an error message
        fs, blocks, used, avail, capacity, mount = fields
        return DiskUsage(
            path=path,
            filesystem=fs,
            total_bytes=int(blocks) * 1024,
            used_bytes=int(used) * 1024,
            available_bytes=int(avail) * 1024,
            used_pct=int(capacity.rstrip("%") or 0) if capacity.rstrip("%").isdigit() else 0,
            mounted_on=mount,
        )
    return None


def parse_ps(output: str, comfy_match: PurePosixPath | None = None) -> list[ProcessInfo]:
    """`ps -eo PS_FORMAT` lines as ProcessInfo (lines that do not parse are skipped)."""
    out: list[ProcessInfo] = []
    for line in output.splitlines():
        fields = line.split(None, 7)
        if len(fields) < 8 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        pid, ppid, user, cpu, mem, rss, elapsed, command = fields
        try:
            out.append(
                ProcessInfo(
                    pid=int(pid),
                    ppid=int(ppid),
                    user=user,
                    cpu_pct=float(cpu),
                    mem_pct=float(mem),
                    rss_kib=int(rss),
                    elapsed=elapsed,
                    command=command,
                    is_comfy=is_comfy_command(command, comfy_match),
                )
            )
        except ValueError:
            continue
    return out


def is_comfy_command(command: str, comfy_dir: PurePosixPath | None) -> bool:
    """Whether a command line is ComfyUI's: a python running `main.py`, or its folder's code."""
    words = command.split()
    if not words:
        return False
    if comfy_dir is not None and (
        f"{comfy_dir}/main.py" in words or (f"{comfy_dir}" in words and "python" in words[0])
    ):
        return True
    if "python" not in PurePosixPath(words[0]).name:
        return False
    script = next((w for w in words[1:] if not w.startswith("-")), "")  # python's script
    return PurePosixPath(script).name == "main.py"


def split_sections(output: str, marker: str, count: int) -> list[str]:
    """The outputs of `count` commands printed one after another, `marker` lines between."""
    parts: list[list[str]] = [[]]
    for line in output.splitlines():
        if line == marker:
            parts.append([])
        else:
            parts[-1].append(line)
    texts = ["\n".join(p) for p in parts]
    return (texts + [""] * count)[:count]
