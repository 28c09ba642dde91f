"""Waiting for one prompt's result: the event stream first, /history as the safety net.

The end of a prompt is the socket's `executing` frame with `node: null` for its id (sent
after ComfyUI wrote the history entry), then the entry is read. A socket can drop, be
replaced by another connection with the same clientId (ComfyUI then stops writing to it
without closing it), or never open (a proxy without WebSockets); so /history/{id} is also
checked when the wait starts, after each reconnect, every `poll_interval` while the socket is
down, and after `IDLE_POLLS` intervals without a frame about the prompt. A prompt that is in
neither the queue nor the history on two checks in a row is reported lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from comfyfleet.comfy.events import EventStream
from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyProtocolError,
    ComfyUnreachable,
    ExecutionFailed,
    ExecutionInterrupted,
    JobTimeout,
    PromptLost,
)
from comfyfleet.models import events as ev
from comfyfleet.models.comfy import HistoryEntry, NodeOutput, PromptResult, QueueState
from comfyfleet.util.clock import Clock

log = logging.getLogger(__name__)

#: Poll intervals of silence (socket up, nothing about the prompt) before /history is checked.
IDLE_POLLS = 10
#: Checks of /history after the socket said "done" before trusting the socket's own outputs.
FINAL_READS = 3


@dataclass
class PromptWatch:
    """What the event stream told about one prompt: progress, outputs, timings, the end."""

    prompt_id: str
    clock: Clock
    started: bool = False
    finished: bool = False
    cached: tuple[str, ...] = ()
    outputs: dict[str, NodeOutput] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    previews: int = 0
    error: ev.ExecutionError | None = None
    interrupted: ev.ExecutionInterrupted | None = None
    _current: tuple[str, float] | None = None

    def feed(self, event: ev.Event) -> bool:
        """Take one event; True when it concerns this prompt (or names no prompt at all)."""
        pid = ev.event_prompt_id(event)
        if pid is not None and pid != self.prompt_id:
            return False
        match event:
            case ev.ExecutionStart():
                self.started = True
            case ev.ExecutionCached(nodes=nodes):
                self.started = True
                self.cached = nodes
            case ev.Executing(node=node) if pid == self.prompt_id:
                self.started = True
                self._switch(node)
                self.finished = node is None
            case ev.Executed(node=node, output=output) if pid == self.prompt_id:
                self.outputs[node] = output
            case ev.ExecutionError():
                self._switch(None)
                self.error = event
            case ev.ExecutionInterrupted():
                self._switch(None)
                self.interrupted = event
            case ev.ExecutionSuccess():
                self._switch(None)
            case ev.PreviewImage() if pid == self.prompt_id or (
                not pid and self.started and not self.finished
            ):
                self.previews += 1
            case ev.Reconnected():
                # The node that was running when the socket dropped has no reliable span.
                self._current = None
        return True

    def _switch(self, node: str | None) -> None:
        now = self.clock.monotonic()
        if self._current is not None:
            running, since = self._current
            if running == node:
                return
            self.timings[running] = round(now - since, 6)
        self._current = None if node is None else (node, now)

    def result(self, entry: HistoryEntry | None, *, from_history: bool) -> PromptResult:
        """The result from the history entry (authoritative), else from the socket's frames."""
        if entry is None:
            return PromptResult(
                prompt_id=self.prompt_id,
                status="success",
                outputs=dict(self.outputs),
                cached=self.cached,
                node_timings=dict(self.timings),
                previews=self.previews,
                from_history=from_history,
            )
        return PromptResult(
            prompt_id=self.prompt_id,
            status=entry.status_str or "success",
            outputs=dict(entry.outputs),
            messages=entry.messages,
            cached=self.cached or entry.cached_nodes,
            node_timings=dict(self.timings),
            previews=self.previews,
            from_history=from_history,
        )


def failure_from_event(prompt_id: str, event: ev.ExecutionError) -> ExecutionFailed:
    return ExecutionFailed(
        prompt_id,
        event.node_id,
        event.node_type,
        event.exception_type,
        event.exception_message,
        event.traceback,
        hint="fix the failing node's inputs (or the model/file it loads) and run again",
    )


def check_entry(entry: HistoryEntry) -> None:
    """Raise what a finished but unsuccessful history entry means."""
    if entry.succeeded:
        return
    failed = entry.message("execution_error")
    if failed is not None:
        event = ev.parse_event_data("execution_error", dict(failed.data))
        if isinstance(event, ev.ExecutionError):
            raise failure_from_event(entry.prompt_id, event)
    stopped = entry.message("execution_interrupted")
    if stopped is not None:
        node = stopped.data.get("node_id")
        raise ExecutionInterrupted(entry.prompt_id, node if isinstance(node, str) else None)
    raise ComfyProtocolError(
        f"prompt {entry.prompt_id} ended with status {entry.status_str!r} and no error message"
    )


HistoryFetch = Callable[[str], Awaitable[HistoryEntry | None]]
QueueFetch = Callable[[], Awaitable[QueueState]]


class _Waiter:
    def __init__(
        self,
        prompt_id: str,
        stream: EventStream | None,
        history: HistoryFetch,
        queue: QueueFetch,
        settings: ComfySettings,
        clock: Clock,
        on_event: Callable[[ev.Event], None] | None,
        early_stream: bool = False,
    ) -> None:
        self.prompt_id = prompt_id
        self.early_stream = early_stream
        self.stream = stream
        self.history = history
        self.queue = queue
        self.interval = settings.poll_interval
        self.max_failures = max(1, settings.ws_reconnect_attempts)
        self.clock = clock
        self.on_event = on_event
        self.watch = PromptWatch(prompt_id, clock)
        self.missing = 0  # consecutive checks that found the prompt nowhere
        self.failures = 0  # consecutive checks that could not reach the server

    @property
    def socket_up(self) -> bool:
        return self.stream is not None and self.stream.connected

    async def run(self, timeout: float | None) -> PromptResult:
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        # Check at once unless the stream was listening before the prompt was queued: the
        # prompt may be done already.
        poll_at = self.clock.monotonic()
        if self.early_stream and self.socket_up:
            poll_at += self.interval * IDLE_POLLS
        while True:
            now = self.clock.monotonic()
            if deadline is not None and now >= deadline:
                raise JobTimeout(
                    f"prompt {self.prompt_id} did not finish within {timeout:g}s",
                    hint="it may still run on the server: interrupt it, or allow more time",
                )
            if now >= poll_at:
                entry = await self.poll()
                if entry is not None:
                    check_entry(entry)
                    return self.watch.result(entry, from_history=True)
                quiet = self.socket_up and not self.missing
                poll_at = now + self.interval * (IDLE_POLLS if quiet else 1)
            if not self.socket_up:
                poll_at = min(poll_at, now + self.interval)
            wait = poll_at - now if deadline is None else min(poll_at, deadline) - now
            event = await self.next_event(max(0.0, wait))
            if event is None:
                continue
            if isinstance(event, ev.Reconnected):
                poll_at = self.clock.monotonic()
            if self.watch.feed(event):
                if self.on_event is not None:
                    self.on_event(event)
                if ev.event_prompt_id(event) == self.prompt_id:
                    poll_at = max(poll_at, self.clock.monotonic() + self.interval * IDLE_POLLS)
            if self.watch.error is not None:
                raise failure_from_event(self.prompt_id, self.watch.error)
            if self.watch.interrupted is not None:
                raise ExecutionInterrupted(self.prompt_id, self.watch.interrupted.node_id)
            if self.watch.finished:
                return await self.finish()

    async def next_event(self, wait: float) -> ev.Event | None:
        stream = self.stream
        if stream is not None and stream.ended:
            self.stream = stream = None  # closed by its owner: carry on by polling
        if stream is None:
            await self.clock.sleep(wait)
            return None
        try:
            return await stream.next_event(wait)
        except ComfyUnreachable as exc:
            # The socket is gone for good; /history polling carries on alone.
            log.warning("%s; following prompt %s by polling", exc.message, self.prompt_id)
            self.stream = None
            return None

    async def poll(self) -> HistoryEntry | None:
        """Check queue then history (in that order: a prompt leaves the queue only as its
        history entry is written, so "not queued" then "no entry" means it is gone)."""
        try:
            queued = self.prompt_id in await self.queue()
            entry = await self.history(self.prompt_id)
        except ComfyUnreachable as exc:
            self.failures += 1
            if self.stream is None and self.failures >= self.max_failures:
                raise
            log.info("history check failed (%s); will retry", exc.message)
            return None
        self.failures = 0
        if entry is not None or queued:
            self.missing = 0
            return entry
        self.missing += 1
        if self.missing >= 2:
            raise PromptLost(
                f"prompt {self.prompt_id} is neither queued, running nor in the history",
                hint="it was deleted from the queue or the server restarted: queue it again",
            )
        return None

    async def finish(self) -> PromptResult:
        """The socket said the prompt is over: read its history entry."""
        for attempt in range(FINAL_READS):
            entry = await self.history(self.prompt_id)
            if entry is not None:
                check_entry(entry)
                return self.watch.result(entry, from_history=False)
            if attempt + 1 < FINAL_READS:
                await self.clock.sleep(min(0.2, self.interval))
        log.warning("no history for finished prompt %s: using the socket's outputs", self.prompt_id)
        return self.watch.result(None, from_history=False)


async def wait_prompt(
    prompt_id: str,
    stream: EventStream | None,
    *,
    history: HistoryFetch,
    queue: QueueFetch,
    settings: ComfySettings,
    clock: Clock,
    on_event: Callable[[ev.Event], None] | None = None,
    timeout: float | None = None,
    early_stream: bool = False,
) -> PromptResult:
    """Follow `prompt_id` on `stream` (None: by polling only) until it ends; see module doc.

    `early_stream`: the stream was open before the prompt was queued, so no event about it
    can have been missed and the first /history check can wait.
    """
    waiter = _Waiter(prompt_id, stream, history, queue, settings, clock, on_event, early_stream)
    return await waiter.run(timeout)
