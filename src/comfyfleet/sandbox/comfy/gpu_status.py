"""`<root>/.sandbox-gpu.json`: what the simulated GPU is doing, for a host's `nvidia-smi`.

    {"pid": 4242, "busy": true, "utilization_gpu": 98, "memory_used_mib": 2048}

Busy while a prompt executes, including a node held by the `hang` knob (a stuck CUDA call
keeps the GPU loaded); idle otherwise, also while a broken persisted queue holds an item
"running" without executing anything (the GPU of a hung queue is idle). The memory is what
/system_stats reports as used. The host's shim (`sandbox.host.gpus.with_comfy_status`)
believes the file only while `pid` is the ComfyUI process it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

BUSY_UTILIZATION = 98


def write_gpu_status(path: Path, *, busy: bool, memory_used_mib: int) -> None:
    """Replace the status file atomically (the shim may read it at any moment)."""
    body = {
        "pid": os.getpid(),
        "busy": busy,
        "utilization_gpu": BUSY_UTILIZATION if busy else 0,
        "memory_used_mib": memory_used_mib,
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a status file must never stop the server
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)


def remove_gpu_status(path: Path) -> None:
    path.unlink(missing_ok=True)
