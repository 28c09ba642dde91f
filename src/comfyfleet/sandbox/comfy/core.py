"""The state of one sandbox ComfyUI and its prompt worker (ComfyUI's `main.prompt_worker`).

`boot` does what ComfyUI does before it listens: prestartup scripts, the start-up banner,
custom node packs (`packs`), and, in persisted-queue mode, the queue restored from
`user/queue.db` (`queuestore`). The worker takes the next queued item, runs it, writes history
(`execution_success` was sent before that, `executing {node: null}` is sent after it), then
acts on the /free flags. With a broken persisted queue the worker takes the next item into
`queue_running` and then hangs on it for good: nothing executes, interrupts change nothing,
prompts are still accepted and /queue still answers, until the queue files are removed and
the server restarted.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from comfyfleet.graph.custom import CustomValidation
from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.sandbox.comfy.catalog import builtin_names, custom_validations, live_catalog
from comfyfleet.sandbox.comfy.executor import Executor
from comfyfleet.sandbox.comfy.gpu_status import remove_gpu_status, write_gpu_status
from comfyfleet.sandbox.comfy.hub import Hub
from comfyfleet.sandbox.comfy.knobs import Knobs
from comfyfleet.sandbox.comfy.layout import Layout
from comfyfleet.sandbox.comfy.logbook import LogBook, banner_lines
from comfyfleet.sandbox.comfy.packs import PackSet, load_packs, run_prestartup_scripts
from comfyfleet.sandbox.comfy.promptqueue import PromptQueue
from comfyfleet.sandbox.comfy.queuestore import QueueStore
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
MIB = 1024**2
RAM_TOTAL = 64 * GIB


def vram_for(device_name: str) -> int:
    for fragment, gib in _VRAM.items():
        if fragment in device_name:
            return gib * GIB
    return 24 * GIB


class ComfyCore:
    """Queue, history, sockets, executor, packs and settings of one server."""

    def __init__(
        self,
        root: Path,
        *,
        speed: float,
        knobs: Knobs,
        device_name: str,
        preview_method: str,
        log_file: Path | None = None,
    ) -> None:
        self.layout = Layout(root)
        self.knobs = knobs
        self.clock = ScaledClock(speed)
        self.device_name = device_name
        self.preview_method = preview_method
        self.layout.prepare()
        log_path = log_file if log_file is not None else self.layout.log_file
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.book = LogBook(log_path)
        self.hub = Hub(knobs, self.queue_info)
        self.queue = PromptQueue(self.queue_updated)
        self.packs = PackSet()
        self.store: QueueStore | None = None
        self.busy = False
        self.executor = Executor(
            self.hub, self.layout, knobs, self.clock, self.book, preview_method, self.packs
        )
        self.number = 0
        self.argv: list[str] = ["main.py"]

    # --- start and stop ----------------------------------------------------------------------

    async def boot(
        self, *, persisted_queue: bool, disable_all: bool, whitelist: Collection[str]
    ) -> None:
        """Everything ComfyUI does before it listens (see the module docstring)."""
        custom_nodes = self.layout.custom_nodes
        run_prestartup_scripts(
            custom_nodes, self.book, disable_all=disable_all, whitelist=whitelist
        )
        self.book.write(
            banner_lines(
                device=self.device_label(),
                vram_mb=vram_for(self.device_name) // MIB,
                ram_mb=RAM_TOTAL // MIB,
                python_version=sys.version,
            )
        )
        self.packs = await load_packs(
            custom_nodes,
            builtin_names(),
            self.book,
            root=self.layout.root,
            disable_all=disable_all,
            whitelist=whitelist,
        )
        self.executor.packs = self.packs
        if persisted_queue:
            self.persist_queue(restore=True)
        self._set_busy(False)

    def close(self) -> None:
        """Let go of the queue database, the packs' modules, the status file and the log."""
        if self.store is not None:
            self.store.close()
        self.packs.unload()
        remove_gpu_status(self.layout.gpu_status)
        self.book.close()

    # --- persisted queue ---------------------------------------------------------------------

    def persist_queue(self, *, restore: bool) -> None:
        """Enter persisted-queue mode: open `user/queue.db`, queue what it holds if `restore`."""
        if self.store is not None:
            return
        store = QueueStore(self.layout.queue_db)
        items = store.open()
        if store.broken is not None:
            self.book.line(f"Failed to restore the persisted queue: {store.broken}")
        if restore:
            for item in items:
                self.queue.put(item)
            self.number = max([self.number, *(int(item[0]) + 1 for item in items)])
        self.store = store
        self.queue_updated()

    def forget_queue_store(self) -> None:
        """Leave persisted-queue mode (the files stay; a hang already in progress stays)."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def corrupt_queue_store(self) -> None:
        """Write garbage over `user/queue.db*` (in any mode; only the persisted mode reads it)."""
        (self.store or QueueStore(self.layout.queue_db)).corrupt()

    # --- queue -----------------------------------------------------------------------------

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def queue_updated(self) -> None:
        self.hub.send_sync("status", {"status": self.queue_info()})
        if self.store is not None:
            self.store.save([*self.queue.running.values(), *self.queue.pending()])

    def catalog(self, report: Callable[[str], None] | None = None) -> NodeCatalog:
        """The live catalog; `report` receives the log text of pack classes that fail."""
        return live_catalog(
            self.layout, with_probe=self.knobs.probe_node, packs=self.packs.object_info(report)
        )

    def validations(self) -> dict[str, CustomValidation]:
        return custom_validations(self.layout, self.packs.validations())

    def running_ids(self) -> list[str]:
        return [str(item[1]) for item in self.queue.running.values()]

    # --- worker ----------------------------------------------------------------------------

    async def worker(self) -> None:
        while True:
            got = await self.queue.get()
            if got is not None:
                if self.store is not None and self.store.broken is not None:
                    # The persisted-queue build blocks on its broken database right after
                    # taking the item: it stays "running" and nothing else ever runs.
                    await asyncio.Event().wait()
                await self._run_item(*got)
            flags = self.queue.take_flags()
            if flags.get("free_memory", False):
                self.executor.reset()

    async def _run_item(self, item: list[Any], task_id: int) -> None:
        started = self.clock.monotonic()
        prompt_id = str(item[1])
        self._set_busy(True)
        try:
            success, messages, result = await self.executor.execute(
                item[2], prompt_id, item[3], item[4], self.catalog()
            )
        except Exception:  # noqa: BLE001 - a simulator bug must not stop the worker
            self.book.write(traceback.format_exc())
            success, messages, result = False, [], {"outputs": {}, "meta": {}}
        finally:
            self._set_busy(False)
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

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        used = vram_for(self.device_name) - self._vram_free()
        write_gpu_status(self.layout.gpu_status, busy=busy, memory_used_mib=used // MIB)

    # --- system stats ----------------------------------------------------------------------

    def system_stats(self) -> dict[str, Any]:
        vram = vram_for(self.device_name)
        free = self._vram_free()
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

    def _vram_free(self) -> int:
        return vram_for(self.device_name) - (2 * GIB if self.busy else GIB // 2)

    def device_label(self) -> str:
        return f"cuda:0 {self.device_name} : cudaMallocAsync"
