"""Watching ComfyUI's queue for progress, and remembering how long a prompt has stalled.

A watch reads /queue, listens on a socket of its own for the window (it sees the broadcast
events: those of prompts without a client, and `status`), reads /queue again, and samples
GPU utilization over SSH at both ends when it can. Windows are cloud-clock seconds (the
sandbox's time runs faster) with a floor of `MIN_REAL_WATCH` real seconds, so a watch never
ends before the answers it waits for can come back.

Stalls are remembered per target in `<data dir>/queue-stalls.json` (see
`control.queue_stall`), so a prompt found stalled by two doctor runs ten minutes apart has
stalled for ten minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from comfyfleet.control.doctor_model import Check
from comfyfleet.control.queue_stall import QueueWatch, StallRecord, queue, update_stall
from comfyfleet.errors import ComfyError, RemoteError
from comfyfleet.models.events import Event, Status, event_prompt_id
from comfyfleet.remote import manage
from comfyfleet.services.doctor_access import Access
from comfyfleet.util.clock import Clock

WATCH_SECONDS = 20.0  # cloud seconds a doctor run watches the queue
MIN_REAL_WATCH = 1.0  # real seconds
STALLS_FILE = "queue-stalls.json"


def window(clock: Clock, seconds: float) -> float:
    """`seconds` of the clock, but at least MIN_REAL_WATCH real seconds."""
    return max(seconds, MIN_REAL_WATCH * clock.speed)


async def gpu_utilization(access: Access) -> int | None:
    """The busiest GPU's utilization now (None without SSH or nvidia-smi)."""
    if access.ssh is None:
        return None
    try:
        gpus = await manage.gpu_status(access.ssh.conn, access.ssh.layout)
    except RemoteError:
        return None
    loads = [g.utilization_pct for g in gpus if g.utilization_pct is not None]
    return max(loads) if loads else None


def _counts(event: Event, running: set[str]) -> bool:
    """Whether a socket event shows a running prompt doing something."""
    if isinstance(event, Status):
        return False
    return event_prompt_id(event) in running


async def watch_queue(access: Access, seconds: float) -> QueueWatch:
    """Watch the queue for `seconds` (cloud clock, see `window`); an empty queue at once."""
    clock, client = access.clock, access.client
    length = window(clock, seconds)
    before = await client.queue()
    if not len(before):
        return QueueWatch(0.0, (), (), 0, 0)  # nothing queued: nothing that could stall
    running = {item.prompt_id for item in before.running}
    samples: list[int] = []
    if (load := await gpu_utilization(access)) is not None:
        samples.append(load)
    events = 0
    deadline = clock.monotonic() + length
    try:
        async with client.events() as stream:
            while (left := deadline - clock.monotonic()) > 0:
                event = await stream.next_event(left)
                if event is not None and _counts(event, running):
                    events += 1
    except ComfyError:
        # No socket (a proxy that refuses upgrades): the queue and the GPU still tell.
        if (left := deadline - clock.monotonic()) > 0:
            await clock.sleep(left)
    after = await client.queue()
    if (load := await gpu_utilization(access)) is not None:
        samples.append(load)
    return QueueWatch(
        seconds=length,
        running_before=tuple(i.prompt_id for i in before.running),
        running_after=tuple(i.prompt_id for i in after.running),
        pending_before=len(before.pending),
        pending_after=len(after.pending),
        events=events,
        gpu_util=tuple(samples) if samples else None,
    )


def target_key(access: Access) -> str:
    return f"instance:{access.instance.id}" if access.instance else access.client.base_url


class StallMemory:
    """Stall records per target, in one small JSON file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STALLS_FILE

    def _load(self) -> dict[str, dict[str, object]]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def get(self, key: str) -> StallRecord | None:
        entry = self._load().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return StallRecord(str(entry["key"]), float(str(entry["since"])))
        except (KeyError, ValueError):
            return None

    def put(self, key: str, record: StallRecord | None) -> None:
        data = self._load()
        if record is None:
            if data.pop(key, None) is None:
                return
        else:
            data[key] = {"key": record.key, "since": record.since}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


async def queue_check(
    access: Access, *, stuck_after: float, seconds: float = WATCH_SECONDS
) -> Check:
    """Watch the queue and judge it (`stuck_after`: cloud seconds)."""
    watch = await watch_queue(access, seconds)
    now = access.clock.now()
    memory = StallMemory(access.state_dir)
    key = target_key(access)
    stall = update_stall(watch, memory.get(key), now)
    memory.put(key, stall)
    return queue(access.ref, watch, stall, now, stuck_after)


def forget_stall(access: Access) -> None:
    """After a repair: what stalled before is no longer the question."""
    StallMemory(access.state_dir).put(target_key(access), None)
