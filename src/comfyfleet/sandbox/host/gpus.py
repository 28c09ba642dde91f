"""`nvidia-smi` as a host shows it: the GPU catalog and the renderers for its output formats.

Pure functions over a `GpuState` (what the host knows: the GPUs, ComfyUI's process, whether
it is busy), so the table and the CSV queries are tested without a host. `with_comfy_status`
refines that state from the status file the sandbox ComfyUI keeps in its root.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DRIVER = "570.172.08"
CUDA = "12.8"


@dataclass(frozen=True)
class GpuModel:
    """What nvidia-smi reports about a card: its name, VRAM (MiB), power cap (W), compute cap."""

    name: str
    memory_mib: int
    power_cap: int
    compute_cap: str


# Vast's gpu_name -> the card as nvidia-smi names it.
_CATALOG: dict[str, GpuModel] = {
    "RTX 5090": GpuModel("NVIDIA GeForce RTX 5090", 32607, 575, "12.0"),
    "RTX 4090": GpuModel("NVIDIA GeForce RTX 4090", 24564, 450, "8.9"),
    "RTX 4080": GpuModel("NVIDIA GeForce RTX 4080", 16376, 320, "8.9"),
    "RTX 4070 Ti": GpuModel("NVIDIA GeForce RTX 4070 Ti", 12282, 285, "8.9"),
    "RTX 3090": GpuModel("NVIDIA GeForce RTX 3090", 24576, 350, "8.6"),
    "RTX 3080": GpuModel("NVIDIA GeForce RTX 3080", 10240, 320, "8.6"),
    "RTX 3060": GpuModel("NVIDIA GeForce RTX 3060", 12288, 170, "8.6"),
    "RTX A6000": GpuModel("NVIDIA RTX A6000", 49140, 300, "8.6"),
    "RTX 6000Ada": GpuModel("NVIDIA RTX 6000 Ada Generation", 49140, 300, "8.9"),
    "A100 PCIE": GpuModel("NVIDIA A100-PCIE-40GB", 40960, 250, "8.0"),
    "A100 SXM4": GpuModel("NVIDIA A100-SXM4-80GB", 81920, 400, "8.0"),
    "H100 PCIE": GpuModel("NVIDIA H100 PCIe", 81559, 350, "9.0"),
    "H100 SXM": GpuModel("NVIDIA H100 80GB HBM3", 81559, 700, "9.0"),
    "L40S": GpuModel("NVIDIA L40S", 46068, 350, "8.9"),
    "L4": GpuModel("NVIDIA L4", 23034, 72, "8.9"),
    "A40": GpuModel("NVIDIA A40", 46068, 300, "8.6"),
}


def gpu_model(vast_name: str) -> GpuModel:
    """The card for a Vast `gpu_name` (`RTX_4090` and `RTX 4090` alike); unknown: 24 GiB."""
    key = vast_name.replace("_", " ").strip()
    if key in _CATALOG:
        return _CATALOG[key]
    name = key if key.upper().startswith("NVIDIA") else f"NVIDIA {key}"
    return GpuModel(name, 24576, 300, "8.6")


@dataclass(frozen=True)
class GpuProcess:
    gpu: int
    pid: int
    name: str
    used_mib: int


@dataclass(frozen=True)
class GpuState:
    """The host's GPUs right now; GPU 0 carries ComfyUI (busy while it runs a prompt)."""

    model: GpuModel
    count: int
    instance_id: int
    processes: Sequence[GpuProcess] = ()
    busy: bool = False
    utilization: int | None = None  # GPU 0's load when ComfyUI says (else 98 busy, 0 idle)

    def used_mib(self, index: int) -> int:
        return sum(p.used_mib for p in self.processes if p.gpu == index) + (1 if index else 2)

    def util(self, index: int) -> int:
        if index == 0 and self.utilization is not None:
            return self.utilization
        return 98 if self.busy and index == 0 else 0

    def temperature(self, index: int) -> int:
        return 67 if self.busy and index == 0 else 34 + index

    def power(self, index: int) -> int:
        return int(self.model.power_cap * 0.9) if self.busy and index == 0 else 21

    def pstate(self, index: int) -> str:
        return "P2" if self.busy and index == 0 else "P8"

    def bus_id(self, index: int) -> str:
        return f"00000000:{index + 1:02X}:00.0"

    def uuid(self, index: int) -> str:
        h = hashlib.sha1(f"{self.instance_id}:{index}".encode()).hexdigest()
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


#: Written by the sandbox ComfyUI in its root (see `sandbox.comfy.gpu_status`).
COMFY_STATUS_FILE = ".sandbox-gpu.json"


def with_comfy_status(state: GpuState, comfy_dir: Path) -> GpuState:
    """`state` with ComfyUI's own word on its GPU (busy, load, memory) when its status file
    exists and belongs to the ComfyUI process in `state.processes`; else `state` unchanged.

    ComfyUI knows what the host's queue view cannot: a prompt stuck in a hung node keeps the
    GPU loaded, while a queue hung before execution leaves it idle with an item "running".
    """
    try:
        data = json.loads((comfy_dir / COMFY_STATUS_FILE).read_text())
        pid, busy = int(data["pid"]), bool(data["busy"])
        load, used = int(data["utilization_gpu"]), int(data["memory_used_mib"])
    except (OSError, ValueError, TypeError, KeyError):
        return state
    if not any(p.pid == pid for p in state.processes):
        return state  # a file left by a ComfyUI that is gone
    procs = [dataclasses.replace(p, used_mib=used) if p.pid == pid else p for p in state.processes]
    return dataclasses.replace(state, processes=procs, busy=busy, utilization=load)


class QueryError(Exception):
    """A query nvidia-smi itself would refuse (its message is what it prints)."""


# field -> (unit or "", value of GPU i)
_GPU_FIELDS: dict[str, tuple[str, Callable[[GpuState, int], object]]] = {
    "index": ("", lambda s, i: i),
    "name": ("", lambda s, i: s.model.name),
    "uuid": ("", lambda s, i: s.uuid(i)),
    "pci.bus_id": ("", lambda s, i: s.bus_id(i)),
    "driver_version": ("", lambda s, i: DRIVER),
    "count": ("", lambda s, i: s.count),
    "persistence_mode": ("", lambda s, i: "Enabled"),
    "pstate": ("", lambda s, i: s.pstate(i)),
    "compute_cap": ("", lambda s, i: s.model.compute_cap),
    "memory.total": ("MiB", lambda s, i: s.model.memory_mib),
    "memory.used": ("MiB", lambda s, i: s.used_mib(i)),
    "memory.free": ("MiB", lambda s, i: s.model.memory_mib - s.used_mib(i)),
    "utilization.gpu": ("%", lambda s, i: s.util(i)),
    "utilization.memory": ("%", lambda s, i: s.util(i) // 3),
    "temperature.gpu": ("", lambda s, i: s.temperature(i)),
    "fan.speed": ("%", lambda s, i: 30 if s.util(i) else 0),
    "power.draw": ("W", lambda s, i: f"{s.power(i):.2f}"),
    "power.limit": ("W", lambda s, i: f"{s.model.power_cap:.2f}"),
}
_GPU_ALIASES = {"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id"}

_APP_FIELDS: dict[str, tuple[str, str, Callable[[GpuState, GpuProcess], object]]] = {
    "pid": ("pid", "", lambda s, p: p.pid),
    "process_name": ("process_name", "", lambda s, p: p.name),
    "used_memory": ("used_gpu_memory", "MiB", lambda s, p: p.used_mib),
    "used_gpu_memory": ("used_gpu_memory", "MiB", lambda s, p: p.used_mib),
    "gpu_uuid": ("gpu_uuid", "", lambda s, p: s.uuid(p.gpu)),
    "gpu_bus_id": ("gpu_bus_id", "", lambda s, p: s.bus_id(p.gpu)),
    "gpu_name": ("gpu_name", "", lambda s, p: s.model.name),
}


def _format_opts(fmt: str | None) -> tuple[bool, bool]:
    if fmt is None:
        raise QueryError('"--format" must be specified with a query option.')
    opts = {o.strip() for o in fmt.split(",") if o.strip()}
    if "csv" not in opts or not opts <= {"csv", "noheader", "nounits"}:
        raise QueryError(f'"{fmt}" is not a valid format.')
    return "noheader" not in opts, "nounits" not in opts


def _cell(value: object, unit: str, units: bool) -> str:
    if unit and units:
        return f"{value} {unit}"
    return str(value)


def query_gpu(state: GpuState, fields: str, fmt: str | None, ids: Sequence[int]) -> str:
    header, units = _format_opts(fmt)
    names = [_GPU_ALIASES.get(f.strip(), f.strip()) for f in fields.split(",") if f.strip()]
    for name in names:
        if name not in _GPU_FIELDS:
            raise QueryError(f'Field "{name}" is not a valid field to query.')
    lines: list[str] = []
    if header:
        lines.append(
            ", ".join(f"{n} [{_GPU_FIELDS[n][0]}]" if _GPU_FIELDS[n][0] else n for n in names)
        )
    for i in ids:
        lines.append(
            ", ".join(_cell(_GPU_FIELDS[n][1](state, i), _GPU_FIELDS[n][0], units) for n in names)
        )
    return "".join(line + "\n" for line in lines)


def query_apps(state: GpuState, fields: str, fmt: str | None, ids: Sequence[int]) -> str:
    header, units = _format_opts(fmt)
    names = [f.strip() for f in fields.split(",") if f.strip()]
    for name in names:
        if name not in _APP_FIELDS:
            raise QueryError(f'Field "{name}" is not a valid field to query.')
    lines: list[str] = []
    if header:
        lines.append(
            ", ".join(
                f"{_APP_FIELDS[n][0]} [{_APP_FIELDS[n][1]}]"
                if _APP_FIELDS[n][1]
                else _APP_FIELDS[n][0]
                for n in names
            )
        )
    for proc in state.processes:
        if proc.gpu in ids:
            lines.append(
                ", ".join(
                    _cell(_APP_FIELDS[n][2](state, proc), _APP_FIELDS[n][1], units) for n in names
                )
            )
    return "".join(line + "\n" for line in lines)


def list_gpus(state: GpuState, ids: Sequence[int]) -> str:
    return "".join(f"GPU {i}: {state.model.name} (UUID: {state.uuid(i)})\n" for i in ids)


_RULE = (
    "+-----------------------------------------+------------------------+----------------------+"
)
_WIDE = "+" + "-" * 89 + "+"


def table(state: GpuState, ids: Sequence[int], now: datetime) -> str:
    """The default `nvidia-smi` screen: one block per GPU, then the process list."""
    lines = [
        now.ctime() + "       ",
        _WIDE,
        "| " + f"{'NVIDIA-SMI ' + DRIVER:<34}{'Driver Version: ' + DRIVER:<31}"
        f"{'CUDA Version: ' + CUDA:<22}" + " |",
        _RULE,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A "
        "| Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage "
        "| GPU-Util  Compute M. |",
        "|                                         |                        "
        "|               MIG M. |",
        "|=========================================+========================+======================|",
    ]
    for i in ids:
        fan = 30 if state.util(i) else 0
        lines += [
            f"|{i:>4}  {state.model.name[:29]:<29}{'On':>4}  |{state.bus_id(i):>19} Off |"
            f"{'Off':>21} |",
            f"|{fan:>4}%   {state.temperature(i):>2}C    {state.pstate(i):<2}"
            f"{state.power(i):>14}W / {state.model.power_cap:>4}W |"
            f"{state.used_mib(i):>8}MiB / {state.model.memory_mib:>6}MiB |"
            f"{state.util(i):>7}%      Default |",
            f"|                                         |                        |{'N/A':>21} |",
            _RULE,
        ]
    lines += [
        " " * 91,
        _WIDE,
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI              PID   Type   Process name"
        "                        GPU Memory |",
        "|        ID   ID                                          "
        "                     Usage      |",
        "|" + "=" * 89 + "|",
    ]
    procs = [p for p in state.processes if p.gpu in ids]
    for p in procs:
        lines.append(
            f"| {p.gpu:>4}   N/A  N/A {p.pid:>12} {'C':>6}   {p.name[:36]:<36} {p.used_mib:>9}MiB |"
        )
    if not procs:
        lines.append("|  No running processes found" + " " * 61 + "|")
    lines.append(_WIDE)
    return "".join(line + "\n" for line in lines)
