"""Doctor rules for the machine: custom node packs that failed to import, disk and memory
headroom, GPU memory held by processes that are not ComfyUI. Pure functions.

Pack failures come from the log's latest import-times report (`remote.comfylog`): each
IMPORT FAILED pack with ComfyUI's reason (`Cannot import <path> module for custom nodes:
<error>`) and, when that reason is a ModuleNotFoundError, the top-level module it misses.

Thresholds: disk warns under 10 GiB free (or 90 % used) and fails under 2 GiB (or 98 %);
memory warns under 4 GiB available (or 10 %) and fails under 1 GiB; a stray GPU process is a
warning (what it holds is gone for ComfyUI), never killed automatically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from comfyfleet.control.doctor_model import TITLES, Check, Fix, Status, cli
from comfyfleet.remote.comfylog import StartupReport
from comfyfleet.remote.host_facts import MemInfo
from comfyfleet.remote.parsing import DiskUsage, GpuInfo

GIB = 1024**3
DISK_WARN_FREE, DISK_FAIL_FREE = 10 * GIB, 2 * GIB
DISK_WARN_PCT, DISK_FAIL_PCT = 90, 98
MEM_WARN_FREE, MEM_FAIL_FREE = 4 * GIB, 1 * GIB
MEM_WARN_FRACTION = 0.10


_CANNOT = re.compile(r"Cannot import .+? module for custom nodes: (.*)$")
_NO_MODULE = re.compile(r"No module named '([^']+)'")


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


@dataclass(frozen=True)
class PackFailure:
    """A pack of the latest start that failed to import, and why."""

    name: str
    reason: str | None
    missing_module: str | None  # top level of `No module named 'a.b'` (-> `a`)


def missing_module(reason: str) -> str | None:
    match = _NO_MODULE.search(reason)
    return match.group(1).split(".")[0] if match else None


def pack_failures(report: StartupReport) -> list[PackFailure]:
    """The IMPORT FAILED packs of `report`, each with its reason and missing module."""
    out: list[PackFailure] = []
    for line in report.imports:
        if not line.failed:
            continue
        reason: str | None = None
        for text in report.failure_lines(line.name):
            if (cannot := _CANNOT.search(text)) is not None:
                reason = cannot.group(1).strip()
            elif "module for custom nodes due to the lack of" in text and reason is None:
                reason = "no NODE_CLASS_MAPPINGS (not a custom node pack)"
        module = missing_module(reason) if reason else None
        out.append(PackFailure(line.name, reason, module))
    return out


def custom_nodes(ref: str, report: StartupReport | None) -> Check:
    """The IMPORT FAILED packs of the log's latest import-times report."""
    title = TITLES["custom-nodes"]
    if report is None:
        return Check("custom-nodes", title, Status.OK, "no custom node pack was loaded")
    packs = report.imports
    failed = pack_failures(report)
    if not failed:
        return Check("custom-nodes", title, Status.OK, f"all {len(packs)} pack(s) imported")
    evidence = tuple(
        f"{p.name}: {p.reason or 'IMPORT FAILED (see the log)'}"
        + (f" [missing module: {p.missing_module}]" if p.missing_module else "")
        for p in failed
    )
    modules = sorted({p.missing_module for p in failed if p.missing_module})
    steps = []
    if modules:
        steps.append(
            "install what they import into the venv (the venv-packages check does it when "
            f"another Python has it): {cli(ref, 'pip', '--', 'install', *modules)}"
        )
    steps.append(
        f"or read the traceback ({cli(ref, 'logs')}) and fix or disable the pack "
        "(rename it to <name>.disabled), then restart"
    )
    summary = f"{len(failed)} of {len(packs)} pack(s) failed: {', '.join(p.name for p in failed)}"
    return Check("custom-nodes", title, Status.FAIL, summary, evidence, Fix("; ".join(steps)))


def disk(ref: str, usage: Mapping[str, DiskUsage | None]) -> Check:
    title = TITLES["disk"]
    seen: dict[str, DiskUsage] = {}
    for u in usage.values():
        if u is not None:
            seen.setdefault(u.mounted_on, u)  # one line per file system
    if not seen:
        return Check("disk", title, Status.SKIPPED, "df answered nothing")
    status = Status.OK
    evidence: list[str] = []
    for mount, u in seen.items():
        evidence.append(f"{mount}: {_gib(u.available_bytes)} free of {_gib(u.total_bytes)}")
        if u.available_bytes < DISK_FAIL_FREE or u.used_pct >= DISK_FAIL_PCT:
            status = Status.FAIL
        elif (u.available_bytes < DISK_WARN_FREE or u.used_pct >= DISK_WARN_PCT) and (
            status is Status.OK
        ):
            status = Status.WARN
    least = min(seen.values(), key=lambda u: u.available_bytes)
    summary = f"least free: {_gib(least.available_bytes)} on {least.mounted_on}"
    if status is Status.OK:
        return Check("disk", title, status, summary, tuple(evidence))
    fix = Fix(
        "free space (models are the big files: "
        f"{cli(ref, 'exec', '--', 'du', '-sh', '$WORKSPACE/ComfyUI/models/*')}); a Vast disk "
        "cannot grow: rent with a bigger --disk for more"
    )
    return Check("disk", title, status, summary, tuple(evidence), fix)


def memory(ref: str, info: MemInfo | None) -> Check:
    title = TITLES["memory"]
    if info is None:
        return Check("memory", title, Status.SKIPPED, "/proc/meminfo is not readable")
    summary = f"{_gib(info.available)} available of {_gib(info.total)}"
    if info.limited:
        summary += " (the container's limit)"
    if info.available < MEM_FAIL_FREE:
        status = Status.FAIL
    elif info.available < MEM_WARN_FREE or info.available < info.total * MEM_WARN_FRACTION:
        status = Status.WARN
    else:
        return Check("memory", title, Status.OK, summary)
    fix = Fix(f"see what holds it: {cli(ref, 'ps')}; ComfyUI's --lowvram/--cache-none help")
    return Check("memory", title, status, summary, (), fix)


def gpu_memory(ref: str, gpus: Sequence[GpuInfo]) -> Check:
    """GPU memory held by compute processes that are not ComfyUI's."""
    title = TITLES["gpu-memory"]
    if not gpus:
        return Check("gpu-memory", title, Status.SKIPPED, "nvidia-smi lists no GPU")
    evidence: list[str] = []
    stray: list[str] = []
    for g in gpus:
        used = "?" if g.memory_used_mib is None else f"{g.memory_used_mib} MiB"
        total = "?" if g.memory_total_mib is None else f"{g.memory_total_mib} MiB"
        evidence.append(f"GPU {g.index} {g.name}: {used} of {total} used")
        for p in g.processes:
            if not p.is_comfy:
                held = "?" if p.used_mib is None else f"{p.used_mib} MiB"
                evidence.append(f"GPU {g.index}: pid {p.pid} ({p.name}) holds {held}")
                stray.append(str(p.pid))
    if not stray:
        summary = "only ComfyUI holds GPU memory"
        return Check("gpu-memory", title, Status.OK, summary, tuple(evidence))
    fix = Fix(
        "stop them if they are not yours to keep (nothing is killed automatically): "
        f"{cli(ref, 'exec', '--', 'kill', *stray)}"
    )
    summary = f"{len(stray)} process(es) other than ComfyUI hold GPU memory"
    return Check("gpu-memory", title, Status.WARN, summary, tuple(evidence), fix)
