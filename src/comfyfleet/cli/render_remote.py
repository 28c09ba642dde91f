"""Terminal rendering for instance management: GPUs, disks, processes, tunnels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from comfyfleet.cli.console import stdout_console

if TYPE_CHECKING:
    from comfyfleet.remote.parsing import DiskUsage, GpuInfo, ProcessInfo
    from comfyfleet.services.connect import Opened


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f} GiB"


def print_gpus(gpus: Sequence[GpuInfo]) -> None:
    table = Table(header_style="bold")
    for col in ("#", "GPU", "util", "memory", "temp", "processes"):
        table.add_column(col)
    for g in gpus:
        procs = ", ".join(
            f"{p.pid} {p.name}{' (ComfyUI)' if p.is_comfy else ''} {_mib(p.used_mib)}"
            for p in g.processes
        )
        table.add_row(
            str(g.index),
            g.name,
            "-" if g.utilization_pct is None else f"{g.utilization_pct}%",
            f"{_mib(g.memory_used_mib)} / {_mib(g.memory_total_mib)}",
            "-" if g.temperature_c is None else f"{g.temperature_c}°C",
            procs or "-",
        )
    stdout_console().print(table)


def print_disk(usage: Mapping[str, DiskUsage | None]) -> None:
    table = Table(header_style="bold")
    for col in ("path", "size", "used", "free", "use%", "mounted on"):
        table.add_column(col)
    gib = 1024**3
    for path, u in usage.items():
        if u is None:
            table.add_row(path, "-", "-", "-", "-", "(missing)")
            continue
        table.add_row(
            path,
            f"{u.total_bytes / gib:.1f} GiB",
            f"{u.used_bytes / gib:.1f} GiB",
            f"{u.available_bytes / gib:.1f} GiB",
            f"{u.used_pct}%",
            u.mounted_on,
        )
    stdout_console().print(table)


def print_ps(procs: Sequence[ProcessInfo]) -> None:
    table = Table(header_style="bold")
    for col in ("pid", "user", "cpu%", "mem%", "time", "command"):
        table.add_column(col)
    for p in procs:
        mark = " [ComfyUI]" if p.is_comfy else ""
        table.add_row(
            str(p.pid),
            p.user,
            f"{p.cpu_pct:.1f}",
            f"{p.mem_pct:.1f}",
            p.elapsed,
            p.command[:120] + mark,
        )
    stdout_console().print(table, markup=False)


def print_tunnels(opened: Sequence[Opened]) -> None:
    table = Table(header_style="bold")
    for col in ("instance", "local URL", "ComfyUI port", "state"):
        table.add_column(col)
    for item in opened:
        state = item.tunnel.state
        ready = "ready" if item.ready else "not answering yet"
        table.add_row(
            item.name, item.tunnel.url, str(state.remote_port), f"{state.status}, {ready}"
        )
    stdout_console().print(table)
