"""Instance fault actions (knobs) applied to the world: stuck, offline, renters, crashes."""

from __future__ import annotations

from comfyfleet.sandbox.vast.instance import Instance, Phase
from comfyfleet.sandbox.vast.knobs import KnobAction
from comfyfleet.sandbox.vast.world import HostEffect, World


def apply_actions(world: World, actions: list[KnobAction], credit: float | None) -> None:
    """Apply queued knob actions (and a credit change) at the world's current time."""
    if credit is not None:
        world.account.credit = credit
        world.changed = True
    for action in actions:
        inst = world.instances.get(action.instance_id)
        if inst is not None:
            _apply(world, action.action, inst, world.sim_now)
            world.changed = True


def _apply(world: World, action: str, inst: Instance, now: float) -> None:
    if action == "stick":
        inst.stuck = True
    elif action == "unstick":
        inst.stuck = False
        if inst.phase is Phase.LOADING:
            inst.phase_since = now
    elif action == "offline":
        _go_offline(world, inst, now)
    elif action == "online":
        _come_online(world, inst, now)
    elif action == "take_gpus":
        if world.holds(inst):
            inst.give_gpus_on_stop = True  # taken the moment a stop releases them
        else:
            world.renter_takes(inst)
    elif action == "release_gpus":
        world.renter_releases(inst)
    elif action == "change_endpoint" and inst.phase is Phase.RUNNING:
        inst.log(now, "daemon", "endpoint changed; container restarted on new ports")
        inst.host_generation += 1
        if world.instant_hosts:
            world.run_container(
                inst, now, ssh_port=world.fake_port(), proxy_port=world.fake_port(), pid=None
            )
        else:
            world.effects.append(HostEffect("start", inst.id, inst.host_generation))
    elif action == "crash" and inst.phase is Phase.RUNNING:
        world.crash(inst, "container exited unexpectedly (exit code 137)")


def _go_offline(world: World, inst: Instance, now: float) -> None:
    if inst.phase is Phase.OFFLINE:
        return
    inst.enter(Phase.OFFLINE, now)
    inst.ports, inst.running_since = None, None
    inst.status_msg = "machine offline: lost contact with the host"
    inst.log(now, "daemon", inst.status_msg)
    world.stop_host(inst)


def _come_online(world: World, inst: Instance, now: float) -> None:
    if inst.phase is not Phase.OFFLINE:
        return
    inst.log(now, "daemon", "machine back online")
    if inst.intended == "running" and world.holds(inst):
        world.enter_loading(inst, now, cached=True)
        return
    inst.enter(Phase.STOPPED, now)
    inst.status_msg = "machine back online"
    if inst.intended == "running":
        world.start(inst, now)
    elif world.holds(inst):
        world.release_gpus(inst, now)
