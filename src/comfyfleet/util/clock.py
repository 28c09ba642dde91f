"""The clock seam: wall time, monotonic time and sleeps that can wake early.

Control loops, pollers and the sandbox take a `Clock` instead of calling `time` and
`asyncio.sleep` directly, so tests run a simulated hour in seconds (`ScaledClock`) or step
time by hand (`ManualClock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Protocol


class Clock(Protocol):
    """What time it is, and how to wait."""

    @property
    def speed(self) -> float:
        """How many simulated seconds pass per real second (1.0 for the real clock)."""

    def now(self) -> float:
        """Wall-clock time, epoch seconds."""

    def monotonic(self) -> float:
        """Monotonic seconds, for deadlines and durations."""

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Wait `seconds` of this clock's time; return True if `wake` was set first."""


async def _sleep_or_wake(real_seconds: float, wake: asyncio.Event | None) -> bool:
    if wake is None:
        await asyncio.sleep(max(0.0, real_seconds))
        return False
    if wake.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=max(0.0, real_seconds))
        return True
    return False


class SystemClock:
    """The real clock."""

    @property
    def speed(self) -> float:
        return 1.0

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        return await _sleep_or_wake(seconds, wake)


class ScaledClock:
    """A clock running `speed` times faster than real time, from an anchor (now) onwards.

    `now()` starts at `start` (default: the real time at creation) and advances `speed`
    simulated seconds per real second; `sleep(s)` waits `s / speed` real seconds.
    """

    def __init__(self, speed: float, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self._speed = float(speed)
        self._real0 = time.monotonic()
        self._wall0 = time.time() if start is None else start
        self._mono0 = self._real0

    @property
    def speed(self) -> float:
        return self._speed

    def _elapsed(self) -> float:
        return (time.monotonic() - self._real0) * self._speed

    def now(self) -> float:
        return self._wall0 + self._elapsed()

    def monotonic(self) -> float:
        return self._mono0 + self._elapsed()

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        return await _sleep_or_wake(seconds / self._speed, wake)


class ManualClock:
    """A clock that moves only when told to (`advance`); sleepers wake when their time comes."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    @property
    def speed(self) -> float:
        return 1.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward and release every sleeper whose deadline has passed."""
        self._now += seconds
        self._mono += seconds
        due = [w for w in self._waiters if w[0] <= self._mono]
        self._waiters = [w for w in self._waiters if w[0] > self._mono]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        if seconds <= 0:
            await asyncio.sleep(0)
            return bool(wake and wake.is_set())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._mono + seconds, fut))
        if wake is None:
            await fut
            return False
        waiter: asyncio.Future[Any] = asyncio.ensure_future(wake.wait())
        pending: set[asyncio.Future[Any]] = {fut, waiter}
        try:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        return waiter in done and fut not in done
