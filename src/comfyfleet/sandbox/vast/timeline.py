"""Simulated time moving forward: phase deadlines, renters handing GPUs back, and billing.

`advance(world, now)` applies every event due by `now` in time order and bills each
simulated second in between at the rates that held then, so billing is exact whatever the
tick rate: running instances pay dph_total, every other phase storage only. When the credit
reaches zero, instances using compute are stopped at that very second; storage keeps
accruing into a negative balance, as on Vast.
"""

from __future__ import annotations

from comfyfleet.sandbox.vast.market import Machine
from comfyfleet.sandbox.vast.world import World

OUT_OF_CREDIT = "Stopped: account out of credit"


def advance(world: World, now: float) -> None:
    """Move the world's simulated time to `now` (never backwards)."""
    now = max(now, world.sim_now)
    while True:
        event = _next_event(world, now)
        if event is None:
            break
        when, kind, target = event
        _bill_until(world, when)
        world.sim_now = when
        if kind == "instance":
            world.on_deadline(world.instances[target], when)
        else:
            _renter_hand_back(world, world.machines[target], when)
    _bill_until(world, now)
    world.sim_now = now


def _next_event(world: World, limit: float) -> tuple[float, str, int] | None:
    best: tuple[float, str, int] | None = None
    for inst in world.instances.values():
        due = inst.deadline()
        if due is not None and due <= limit and (best is None or due < best[0]):
            best = (due, "instance", inst.id)
    for machine in world.machines.values():
        for holder in machine.holders:
            due = holder.until if holder is not None and holder.kind == "renter" else None
            if due is not None and due <= limit and (best is None or due < best[0]):
                best = (due, "machine", machine.id)
    return best


def _renter_hand_back(world: World, machine: Machine, now: float) -> None:
    due = [
        i
        for i, h in enumerate(machine.holders)
        if h is not None and h.kind == "renter" and h.until is not None and h.until <= now
    ]
    world.set_holders(machine, due, None)
    world.schedule_waiting(machine, now)


def _bill_until(world: World, until: float) -> None:
    """Charge every instance up to `until`; at zero credit, stop what uses compute."""
    while True:
        computing = [i for i in world.instances.values() if i.rate > i.storage_dph]
        if computing and world.account.credit <= 1e-9:
            for inst in computing:
                world.stop(inst, world.billed_until, OUT_OF_CREDIT)
            continue
        remaining = until - world.billed_until
        if remaining <= 1e-9:
            break
        rate = sum(i.rate for i in world.instances.values())
        step = remaining
        if computing and rate > 0:
            step = min(step, world.account.credit / rate * 3600.0)  # up to the zero crossing
        _charge(world, step)
    world.billed_until = max(world.billed_until, until)


def _charge(world: World, seconds: float) -> None:
    hours = seconds / 3600.0
    for inst in world.instances.values():
        compute = (inst.rate - inst.storage_dph) * hours
        storage = inst.storage_dph * hours
        inst.cost_compute += compute
        inst.cost_storage += storage
        world.account.credit -= compute + storage
    world.billed_until += seconds
