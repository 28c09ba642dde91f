"""ComfyUI's in-memory `PromptQueue`: a min-heap of pending items, the running item, history.

A queue item is `[number, prompt_id, prompt, extra_data, outputs_to_execute]`; the heap orders
items by number then prompt id, and `queue_pending` shows the raw heap array (not sorted).
Nothing is persisted: a restart loses pending, running and history (capped at 10000 entries).
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable
from typing import Any

MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

QueueItem = list[Any]


class _Entry:
    """Heap entry ordered like ComfyUI's tuples: number, then prompt id (then arrival)."""

    __slots__ = ("item", "seq")

    def __init__(self, item: QueueItem, seq: int) -> None:
        self.item = item
        self.seq = seq

    def key(self) -> tuple[float, str, int]:
        return (self.item[0], str(self.item[1]), self.seq)

    def __lt__(self, other: _Entry) -> bool:
        return self.key() < other.key()


class PromptQueue:
    """Pending heap, running items, history and worker flags; `on_change` broadcasts status."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._task_counter = 0
        self.running: dict[int, QueueItem] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, Any] = {}
        self._wakeup = asyncio.Event()

    # --- pending ---------------------------------------------------------------------------

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, _Entry(item, next(self._seq)))
        self._on_change()
        self._wakeup.set()

    async def get(self) -> tuple[QueueItem, int] | None:
        """The next item to run, or None when woken by a flag (POST /free) with nothing queued."""
        if not self._heap:
            self._wakeup.clear()
            await self._wakeup.wait()
            if not self._heap:
                return None
        item = heapq.heappop(self._heap).item
        task_id = self._task_counter
        self.running[task_id] = copy.deepcopy(item)
        self._task_counter += 1
        self._on_change()
        return item, task_id

    def pending(self) -> list[QueueItem]:
        return [entry.item for entry in self._heap]

    def remaining(self) -> int:
        return len(self._heap) + len(self.running)

    def wipe(self) -> None:
        self._heap = []
        self._on_change()

    def delete(self, prompt_id: str) -> bool:
        for index, entry in enumerate(self._heap):
            if entry.item[1] == prompt_id:
                if len(self._heap) == 1:
                    self.wipe()
                else:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                self._on_change()
                return True
        return False

    def set_flag(self, name: str, value: Any) -> None:
        self.flags[name] = value
        self._wakeup.set()

    def take_flags(self) -> dict[str, Any]:
        flags, self.flags = self.flags, {}
        return flags

    # --- history ---------------------------------------------------------------------------

    def task_done(self, task_id: int, result: dict[str, Any], status: dict[str, Any]) -> None:
        item = self.running.pop(task_id)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        extra_data = item[3]
        if isinstance(extra_data, dict):
            for key in SENSITIVE_EXTRA_DATA_KEYS:
                extra_data.pop(key, None)
        entry: dict[str, Any] = {"prompt": item, "outputs": {}, "status": copy.deepcopy(status)}
        entry.update(result)
        self.history[str(item[1])] = entry
        self._on_change()

    def get_history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        for index, key in enumerate(self.history):
            if index >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def history_item(self, prompt_id: str) -> dict[str, Any]:
        if prompt_id in self.history:
            return {prompt_id: copy.deepcopy(self.history[prompt_id])}
        return {}
