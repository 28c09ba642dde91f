"""Cost accrual (pure): what an instance has cost, from its observed status history.

Vast bills per second: storage (`storage_dph`) for as long as the instance exists, in every
state, and compute (`dph_total - storage_dph`) only while it runs. The history is what
comfyfleet observed, so the figure is an estimate between observations; the account balance
is the authority.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from comfyfleet.models.vast import InstanceStatus


@dataclass(frozen=True)
class StatusSpan:
    """An observed status change at `at` (epoch seconds)."""

    at: float
    status: InstanceStatus


@dataclass(frozen=True)
class CostBreakdown:
    """Seconds alive and running, and dollars for each part."""

    alive_seconds: float
    running_seconds: float
    storage_usd: float
    compute_usd: float

    @property
    def total_usd(self) -> float:
        return self.storage_usd + self.compute_usd


def accrued_cost(
    spans: Iterable[StatusSpan],
    *,
    created_at: float,
    until: float,
    dph_total: float | None,
    storage_dph: float | None,
) -> CostBreakdown:
    """Cost from `created_at` to `until` (destroy time or now) given the status changes."""
    storage = storage_dph or 0.0
    compute = max(0.0, (dph_total or 0.0) - storage)
    alive = max(0.0, until - created_at)
    running = 0.0
    ordered = sorted(spans, key=lambda s: s.at)
    for i, span in enumerate(ordered):
        if span.status is not InstanceStatus.RUNNING or span.at >= until:
            continue
        end = ordered[i + 1].at if i + 1 < len(ordered) else until
        running += max(0.0, min(end, until) - max(span.at, created_at))
    return CostBreakdown(alive, running, alive * storage / 3600.0, running * compute / 3600.0)
