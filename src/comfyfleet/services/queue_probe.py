"""Does the queue run? After a repair rung: wait for the hung prompts to leave, then run a tiny
probe prompt at the front of the queue and see it finish (`control.queue_ladder`).

The probe is two built-in nodes (an 8x8 EmptyImage into a PreviewImage, a fresh color each
time so nothing is cached): it needs no model and no GPU, and finishes in well under a second
on a working server. A probe that ran is deleted from the history afterwards; probes stuck in
a queue that still hangs are dropped by the next rung or by `discard`.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from comfyfleet.control.queue_ladder import Outcome, Probe
from comfyfleet.errors import (
    ComfyError,
    ExecutionFailed,
    ExecutionInterrupted,
    JobTimeout,
    PromptLost,
    PromptRejected,
)
from comfyfleet.services.doctor_access import Access
from comfyfleet.services.doctor_queue import window

POLLS = 10  # /queue reads while waiting for hung prompts to leave


def probe_prompt() -> dict[str, Any]:
    """A prompt of built-in nodes only, different every time (so never served from cache)."""
    color = secrets.randbelow(0xFFFFFF + 1)
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


class Prober:
    """Runs probes against one target and remembers the ones left behind."""

    def __init__(self, access: Access, seconds: float) -> None:
        self.access = access
        self.seconds = window(access.clock, seconds)
        self.left_behind: list[str] = []

    async def still_running(self, hung: tuple[str, ...]) -> tuple[str, ...]:
        """The `hung` prompts still running once they had the window to leave."""
        clock, client = self.access.clock, self.access.client
        deadline = clock.monotonic() + self.seconds
        while True:
            running = {item.prompt_id for item in (await client.queue()).running}
            left = tuple(p for p in hung if p in running)
            if not left or clock.monotonic() >= deadline:
                return left
            await clock.sleep(self.seconds / POLLS)

    async def outcome(self, hung: tuple[str, ...]) -> Outcome:
        """What the queue does now (see the module docstring)."""
        if not await self.access.answers():
            return Outcome(False, (), Probe.NOT_TRIED)
        try:
            left = await self.still_running(hung)
            if left:
                return Outcome(True, left, Probe.NOT_TRIED)
            return Outcome(True, (), await self.probe())
        except ComfyError:  # it stopped answering half-way
            return Outcome(False, (), Probe.NOT_TRIED)

    async def probe(self) -> Probe:
        client = self.access.client
        try:
            accepted = await client.queue_prompt(probe_prompt(), front=True)
        except PromptRejected:
            return Probe.REJECTED
        try:
            await client.wait_for(accepted.prompt_id, timeout=self.seconds)
        except (ExecutionFailed, ExecutionInterrupted):
            pass  # the worker took it and ran it: that is what the probe asks
        except (JobTimeout, PromptLost):
            self.left_behind.append(accepted.prompt_id)
            return Probe.STUCK
        with contextlib.suppress(ComfyError):
            await client.delete_history([accepted.prompt_id])
        return Probe.RAN

    async def discard(self) -> None:
        """Drop probes still pending (best effort: a hung server may keep one running)."""
        if self.left_behind:
            with contextlib.suppress(ComfyError):
                await self.access.client.delete_queued(self.left_behind)
