"""Fault and timing knobs of the sandbox ComfyUI (see the package docstring for each one).

A `Knobs` object may be changed from any thread (tests drive a server running in another
thread); the server subscribes to changes and applies "now" actions (drop sockets, stop
listening) in its own loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Crash:
    """Make a node raise mid-run: `exception_type` is the module-qualified name ComfyUI reports."""

    exception_type: str = "RuntimeError"
    message: str = "simulated failure"


class Knobs:
    """Test knobs: per-class durations, slow/hung/crashing nodes, socket drops, 5xx, refusals.

    Targets (for `slow`, `hang`, `crash`) are a node class (`"KSampler"`) or a node id (`"3"`).
    Durations are simulated seconds (the server's clock runs `speed` times faster).
    """

    def __init__(
        self, durations: Mapping[str, float] | None = None, *, probe_node: bool = False
    ) -> None:
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self.durations: dict[str, float] = dict(durations or {})
        self.slow_nodes: dict[str, float] = {}
        self.hung_nodes: set[str] = set()
        self.crash_nodes: dict[str, Crash] = {}
        self.fail_statuses: list[int] = []
        self.ws_drop_after: int | None = None
        self.refusing = False
        self.refuse_seconds: float | None = None
        self.probe_node = probe_node
        self.preview_method: str | None = None
        self.forged_output: tuple[str, str] | None = None
        self.persisted_queue = False
        self._corrupt_queue = False

    # --- subscription ----------------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # --- timing ----------------------------------------------------------------------------

    def set_duration(self, class_type: str, seconds: float) -> None:
        """Simulated seconds every node of `class_type` takes (samplers: per step)."""
        with self._lock:
            self.durations[class_type] = float(seconds)
        self._changed()

    def slow(self, target: str, seconds: float) -> None:
        """Make a node take `seconds`; it still honours interrupts between its progress steps."""
        with self._lock:
            self.slow_nodes[target] = float(seconds)
        self._changed()

    def hang(self, target: str) -> None:
        """Make a node never finish and ignore interrupts (a stuck CUDA call) until released."""
        with self._lock:
            self.hung_nodes.add(target)
        self._changed()

    def release(self, target: str | None = None) -> None:
        """Let hung nodes (all, or one target) finish."""
        with self._lock:
            if target is None:
                self.hung_nodes.clear()
            else:
                self.hung_nodes.discard(target)
        self._changed()

    def crash(
        self, target: str, exception_type: str = "RuntimeError", message: str = "simulated failure"
    ) -> None:
        """Make a node raise `exception_type: message` half-way through its run."""
        with self._lock:
            self.crash_nodes[target] = Crash(exception_type, message)
        self._changed()

    def enable_previews(self, method: str = "auto") -> None:
        """Send sampler previews as `--preview-method <method>` would ("none" turns them off)."""
        with self._lock:
            self.preview_method = method
        self._changed()

    # --- network faults --------------------------------------------------------------------

    def fail_requests(self, count: int = 1, status: int = 500) -> None:
        """Answer the next `count` HTTP requests (and WebSocket upgrades) with `status`."""
        with self._lock:
            self.fail_statuses.extend([int(status)] * int(count))
        self._changed()

    def drop_websockets(self, after: int = 0) -> None:
        """Abort every WebSocket (no close frame) now, or after `after` more server frames."""
        with self._lock:
            self.ws_drop_after = max(0, int(after))
        self._changed()

    def refuse_connections(self, seconds: float | None = None) -> None:
        """Stop listening (connections are refused); come back after `seconds` if given."""
        with self._lock:
            self.refusing = True
            self.refuse_seconds = seconds
        self._changed()

    def accept_connections(self) -> None:
        """Listen again on the same port."""
        with self._lock:
            self.refusing = False
            self.refuse_seconds = None
        self._changed()

    def forge_output_names(self, subfolder: str, filename: str) -> None:
        """Report every output file under this subfolder and name (a hostile server: the
        files themselves stay where they are, so a download by the forged name fails)."""
        with self._lock:
            self.forged_output = (subfolder, filename)
        self._changed()

    # --- persisted queue -------------------------------------------------------------------

    def persist_queue(self, enabled: bool = True) -> None:
        """Keep the queue in `user/queue.db` (a mode, not a fault: `reset` keeps it)."""
        with self._lock:
            self.persisted_queue = bool(enabled)
        self._changed()

    def corrupt_queue_db(self) -> None:
        """Write garbage over `user/queue.db` and its journal now (the file stays corrupt)."""
        with self._lock:
            self._corrupt_queue = True
        self._changed()

    def take_corrupt_queue(self) -> bool:
        """True (once) after `corrupt_queue_db` was asked for."""
        with self._lock:
            asked, self._corrupt_queue = self._corrupt_queue, False
            return asked

    def reset(self) -> None:
        """Forget every fault (durations stay)."""
        with self._lock:
            self.forged_output = None
            self.slow_nodes.clear()
            self.hung_nodes.clear()
            self.crash_nodes.clear()
            self.fail_statuses.clear()
            self.ws_drop_after = None
            self.refusing = False
            self.refuse_seconds = None
        self._changed()

    # --- queries used by the server ----------------------------------------------------------

    def duration_for(self, class_type: str, default: float) -> float:
        with self._lock:
            return self.durations.get(class_type, default)

    def _match(
        self, table: Mapping[str, Any] | set[str], node_id: str, class_type: str
    ) -> str | None:
        if node_id in table:
            return node_id
        if class_type in table:
            return class_type
        return None

    def slow_for(self, node_id: str, class_type: str) -> float | None:
        with self._lock:
            key = self._match(self.slow_nodes, node_id, class_type)
            return None if key is None else self.slow_nodes[key]

    def is_hung(self, node_id: str, class_type: str) -> bool:
        with self._lock:
            return self._match(self.hung_nodes, node_id, class_type) is not None

    def crash_for(self, node_id: str, class_type: str) -> Crash | None:
        with self._lock:
            key = self._match(self.crash_nodes, node_id, class_type)
            return None if key is None else self.crash_nodes[key]

    def take_failure(self) -> int | None:
        """The status to fail the current request with, if a failure is armed."""
        with self._lock:
            return self.fail_statuses.pop(0) if self.fail_statuses else None

    def count_ws_frame(self) -> bool:
        """Count one frame sent; True when it was the last one before an armed drop."""
        with self._lock:
            if self.ws_drop_after is None or self.ws_drop_after <= 0:
                return False
            self.ws_drop_after -= 1
            if self.ws_drop_after == 0:
                self.ws_drop_after = None
                return True
            return False

    def take_drop_now(self) -> bool:
        """True (once) when a drop was asked for with no frames to wait for."""
        with self._lock:
            if self.ws_drop_after == 0:
                self.ws_drop_after = None
                return True
            return False

    def snapshot(self) -> dict[str, Any]:
        """The knob state as JSON (GET /__sandbox/knobs)."""
        with self._lock:
            return {
                "durations": dict(self.durations),
                "slow": dict(self.slow_nodes),
                "hung": sorted(self.hung_nodes),
                "crash": {
                    k: {"exception_type": c.exception_type, "message": c.message}
                    for k, c in self.crash_nodes.items()
                },
                "fail_statuses": list(self.fail_statuses),
                "ws_drop_after": self.ws_drop_after,
                "refusing": self.refusing,
                "probe_node": self.probe_node,
                "preview_method": self.preview_method,
                "forged_output": list(self.forged_output) if self.forged_output else None,
                "persisted_queue": self.persisted_queue,
            }
