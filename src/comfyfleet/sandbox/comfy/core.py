"""The state of one sandbox ComfyUI and its prompt worker (ComfyUI's `main.prompt_worker`).

The worker takes the next queued item, runs it, writes history (`execution_success` was sent
before that, `executing {node: null}` is sent after it), then acts on the /free flags.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from pathlib import Path
from typing import Any

from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.sandbox.comfy.catalog import live_catalog
from comfyfleet.sandbox.comfy.executor import Executor
from comfyfleet.sandbox.comfy.hub import Hub
from comfyfleet.sandbox.comfy.knobs import Knobs
from comfyfleet.sandbox.comfy.layout import Layout
from comfyfleet.sandbox.comfy.logbook import LogBook
from comfyfleet.sandbox.comfy.promptqueue import PromptQueue
from comfyfleet.util.clock import ScaledClock

GIB = 1024**3
#: Total VRAM by device name fragment (bytes); unknown cards get 24 GiB.
_VRAM = {
    "4090": 24,
    "3090": 24,
    "4080": 16,
    "3080": 10,
    "A100": 80,
    "H100": 80,
    "H200": 141,
    "A6000": 48,
    "L40": 48,
    "A40": 48,
    "A10": 24,
    "L4": 24,
    "3060": 12,
    "4070": 12,
    "5090": 32,
}
RAM_TOTAL = 64 * GIB


def vram_for(device_name: str) -> int:
    for fragment, gib in _VRAM.items():
        if fragment in device_name:
            return gib * GIB
    return 24 * GIB


class ComfyCore:
    """Queue, history, sockets, executor and settings of one server."""

    def __init__(
        self, root: Path, *, speed: float, knobs: Knobs, device_name: str, preview_method: str
    ) -> None:
        self.layout = Layout(root)
        self.knobs = knobs
        self.clock = ScaledClock(speed)
        self.device_name = device_name
        self.preview_method = preview_method
        self.layout.prepare()
        self.book = LogBook(self.layout.log_file)
        self.hub = Hub(knobs, self.queue_info)
        self.queue = PromptQueue(self.queue_updated)
        self.executor = Executor(
            self.hub, self.layout, knobs, self.clock, self.book, preview_method
        )
        self.number = 0
        self.argv: list[str] = ["main.py"]

    # --- queue -----------------------------------------------------------------------------

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def queue_updated(self) -> None:
        self.hub.send_sync("status", {"status": self.queue_info()})

    def catalog(self) -> NodeCatalog:
        return live_catalog(self.layout, with_probe=self.knobs.probe_node)

    def running_ids(self) -> list[str]:
        return [str(item[1]) for item in self.queue.running.values()]

    # --- worker ----------------------------------------------------------------------------

    async def worker(self) -> None:
        while True:
            got = await self.queue.get()
            if got is not None:
                await self._run_item(*got)
            flags = self.queue.take_flags()
            if flags.get("free_memory", False):
                self.executor.reset()

    async def _run_item(self, item: list[Any], task_id: int) -> None:
        started = self.clock.monotonic()
        prompt_id = str(item[1])
        try:
            success, messages, result = await self.executor.execute(
                item[2], prompt_id, item[3], item[4], self.catalog()
            )
        except Exception:  # noqa: BLE001 - a simulator bug must not stop the worker
            self.book.write(traceback.format_exc())
            success, messages, result = False, [], {"outputs": {}, "meta": {}}
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": messages,
        }
        self.queue.task_done(task_id, result, status)
        if self.hub.client_id is not None:
            self.hub.send_sync(
                "executing", {"node": None, "prompt_id": prompt_id}, self.hub.client_id
            )
        elapsed = self.clock.monotonic() - started
        if elapsed > 600:
            hours, rest = divmod(int(elapsed), 3600)
            self.book.line(f"Prompt executed in {hours:02}:{rest // 60:02}:{rest % 60:02}")
        else:
            self.book.line(f"Prompt executed in {elapsed:.2f} seconds")
        await asyncio.sleep(0)

    # --- system stats ----------------------------------------------------------------------

    def system_stats(self) -> dict[str, Any]:
        vram = vram_for(self.device_name)
        free = vram - (2 * GIB if self.queue.running else GIB // 2)
        ram_free = RAM_TOTAL - 6 * GIB
        return {
            "system": {
                "os": "posix",
                "ram_total": RAM_TOTAL,
                "ram_free": ram_free,
                "comfyui_version": "0.3.64",
                "required_frontend_version": "1.27.10",
                "installed_templates_version": "0.1.95",
                "required_templates_version": "0.1.95",
                "python_version": sys.version,
                "pytorch_version": "2.8.0+cu128",
                "embedded_python": False,
                "argv": list(self.argv),
            },
            "devices": [
                {
                    "name": self.device_label(),
                    "type": "cuda",
                    "index": 0,
                    "vram_total": vram,
                    "vram_free": free,
                    "torch_vram_total": 0,
                    "torch_vram_free": 0,
                }
            ],
        }

    def device_label(self) -> str:
        return f"cuda:0 {self.device_name} : cudaMallocAsync"
