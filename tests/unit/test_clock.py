"""The clock seam: scaled and manual clocks, early wake."""

from __future__ import annotations

import asyncio
import time

import pytest

from comfyfleet.util.clock import ManualClock, ScaledClock, SystemClock


async def test_scaled_clock_runs_faster() -> None:
    clock = ScaledClock(100.0)
    t0, real0 = clock.monotonic(), time.monotonic()
    await clock.sleep(5.0)  # 5 simulated seconds = 0.05 real
    real = time.monotonic() - real0
    assert real < 1.0
    assert clock.monotonic() - t0 >= 5.0


async def test_sleep_wakes_early() -> None:
    for clock in (SystemClock(), ScaledClock(2.0)):
        wake = asyncio.Event()
        asyncio.get_running_loop().call_later(0.02, wake.set)
        started = time.monotonic()
        assert await clock.sleep(30.0, wake) is True
        assert time.monotonic() - started < 5.0


async def test_manual_clock_releases_due_sleepers() -> None:
    clock = ManualClock()
    done: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        done.append(name)

    tasks = [asyncio.create_task(sleeper("a", 10)), asyncio.create_task(sleeper("b", 20))]
    await asyncio.sleep(0)
    clock.advance(15)
    await asyncio.sleep(0)
    assert done == ["a"]
    clock.advance(5)
    await asyncio.gather(*tasks)
    assert done == ["a", "b"]


async def test_manual_clock_wake_event() -> None:
    clock = ManualClock()
    wake = asyncio.Event()
    task = asyncio.create_task(clock.sleep(100, wake))
    await asyncio.sleep(0)
    wake.set()
    assert await task is True


def test_scaled_clock_rejects_nonpositive_speed() -> None:
    with pytest.raises(ValueError):
        ScaledClock(0)
