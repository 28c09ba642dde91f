"""The simulated cloud's state: market, instances, account, and the moves between phases.

`World` knows nothing about HTTP or processes; time moves only through `timeline.advance`,
which calls `on_deadline` for each phase deadline in time order and bills in between. Host
processes are asked for through `effects` (the cloud server launches and stops them and
reports back with `host_started` / `host_failed` / `host_exited`); with `instant_hosts` no
process is involved and instances get made-up ports the moment their container "starts".
"""

from __future__ import annotations

import random
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from comfyfleet.sandbox.vast.errors import ApiError
from comfyfleet.sandbox.vast.instance import Instance, Phase
from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.market import Holder, Machine, build_market

FIRST_INSTANCE_ID = 32_000_001
FAKE_PORTS = (41_000, 60_000)  # made-up host ports when no host process runs
JUPYTER_SSH_OFFSET = 1  # Vast lists the jupyter port as ssh_port; SSH is the next one


@dataclass
class SshKey:
    id: int
    key: str
    created_at: float


@dataclass
class Account:
    api_key: str
    credit: float
    id: int = 420_042
    email: str = "sandbox@comfyfleet.invalid"
    username: str = "sandbox"


@dataclass(frozen=True)
class HostEffect:
    """Work for the host manager: "start" / "stop" / "wipe" (delete the instance's files)."""

    kind: str
    instance_id: int
    generation: int


class World:
    def __init__(
        self,
        knobs: VastKnobs,
        *,
        seed: int = 0,
        now: float,
        credit: float = 50.0,
        api_key: str | None = None,
        instant_hosts: bool = True,
    ) -> None:
        self.knobs = knobs
        self.seed = seed
        self.instant_hosts = instant_hosts
        self.sim_now = now
        self.billed_until = now
        machines, self.next_offer_id = build_market(seed, now)
        self.machines: dict[int, Machine] = {m.id: m for m in machines}
        self.instances: dict[int, Instance] = {}
        self.ssh_keys: list[SshKey] = []
        self.account = Account(api_key=api_key or secrets.token_hex(32), credit=credit)
        self.next_instance_id = FIRST_INSTANCE_ID
        self.next_key_id = 7001
        self.next_fake_port = FAKE_PORTS[0]
        self.draws = 0
        self.effects: list[HostEffect] = []
        self.closed: list[dict[str, Any]] = []  # charges of destroyed instances (invoices)
        self.keys_changed = False  # authorized_keys files need rewriting
        self.changed = True  # something worth persisting happened since the last save

    # --- persistence ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "seed": self.seed,
            "sim_now": self.sim_now,
            "billed_until": self.billed_until,
            "next_offer_id": self.next_offer_id,
            "next_instance_id": self.next_instance_id,
            "next_key_id": self.next_key_id,
            "next_fake_port": self.next_fake_port,
            "draws": self.draws,
            "account": asdict(self.account),
            "ssh_keys": [asdict(k) for k in self.ssh_keys],
            "machines": [m.to_json() for m in self.machines.values()],
            "instances": [i.to_json() for i in self.instances.values()],
            "closed": self.closed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], knobs: VastKnobs, *, instant_hosts: bool) -> World:
        world = cls.__new__(cls)
        world.knobs = knobs
        world.instant_hosts = instant_hosts
        world.seed = int(data["seed"])
        world.sim_now = float(data["sim_now"])
        world.billed_until = float(data["billed_until"])
        world.next_offer_id = int(data["next_offer_id"])
        world.next_instance_id = int(data["next_instance_id"])
        world.next_key_id = int(data["next_key_id"])
        world.next_fake_port = int(data["next_fake_port"])
        world.draws = int(data["draws"])
        world.account = Account(**data["account"])
        world.ssh_keys = [SshKey(**k) for k in data["ssh_keys"]]
        world.machines = {m["id"]: Machine.from_json(m) for m in data["machines"]}
        world.instances = {i["id"]: Instance.from_json(i) for i in data["instances"]}
        world.closed = list(data.get("closed", []))
        world.effects = []
        world.keys_changed = False
        world.changed = False
        return world

    def resume(self) -> None:
        """After a restart: containers that were up (or coming up) start again.

        Without host processes there is nothing to restart: instances keep their ports.
        """
        if self.instant_hosts:
            return
        for inst in self.instances.values():
            if inst.phase in (Phase.RUNNING, Phase.STARTING):
                inst.log(self.sim_now, "daemon", "machine restarted; starting container")
                self.start_container(inst, self.sim_now)

    # --- ids and market -------------------------------------------------------------------

    def _new_offer_id(self) -> int:
        self.next_offer_id += 1
        return self.next_offer_id - 1

    def fake_port(self) -> int:
        port = self.next_fake_port
        self.next_fake_port = port + 1 if port + 1 < FAKE_PORTS[1] else FAKE_PORTS[0]
        return port

    def machine_for_offer(self, offer_id: int) -> Machine | None:
        return next((m for m in self.machines.values() if m.offer_id == offer_id), None)

    def rented_machines(self) -> set[int]:
        return {i.machine_id for i in self.instances.values()}

    def instance(self, instance_id: int) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise ApiError(404, "no_such_instance", f"Instance {instance_id} not found.")
        return inst

    def holds(self, inst: Instance) -> bool:
        machine = self.machines[inst.machine_id]
        return all(
            (h := machine.holders[i]) is not None
            and h.kind == "instance"
            and h.instance_id == inst.id
            for i in inst.gpu_indexes
        )

    def set_holders(self, machine: Machine, indexes: list[int], holder: Holder | None) -> None:
        for i in indexes:
            machine.holders[i] = holder
        machine.refresh_offer(self._new_offer_id)
        self.changed = True

    def renter_until(self) -> float | None:
        """When a renter taking GPUs now gives them back (None: never)."""
        hold = self.knobs.durations.renter_hold
        return None if hold is None else self.sim_now + hold

    def consume_offer(self, machine: Machine, gpus: list[int], holder: Holder | None) -> None:
        """The machine's current offer id is used up; `gpus` go to `holder`."""
        machine.offer_id = None
        self.set_holders(machine, gpus, holder)

    def hold_gpus(self, inst: Instance) -> bool:
        """Take the instance's GPUs if they are all free (or already its own)."""
        machine = self.machines[inst.machine_id]
        if self.holds(inst):
            return True
        if any(machine.holders[i] is not None for i in inst.gpu_indexes):
            return False
        self.set_holders(machine, inst.gpu_indexes, Holder("instance", inst.id))
        return True

    def release_gpus(self, inst: Instance, now: float, *, to_renter: bool = False) -> None:
        machine = self.machines[inst.machine_id]
        mine = [
            i
            for i in inst.gpu_indexes
            if (h := machine.holders[i]) is not None and h.instance_id == inst.id
        ]
        hold = self.knobs.durations.renter_hold
        until = None if hold is None else now + hold
        self.set_holders(machine, mine, Holder("renter", None, until) if to_renter else None)
        if not to_renter:
            self.schedule_waiting(machine, now)

    def renter_takes(self, inst: Instance) -> None:
        """Another renter takes the (free) GPUs of a stopped instance."""
        machine = self.machines[inst.machine_id]
        free = [i for i in inst.gpu_indexes if machine.holders[i] is None]
        self.set_holders(machine, free, Holder("renter", None, self.renter_until()))
        inst.log(self.sim_now, "daemon", f"GPU(s) {free} rented by another client")

    def renter_releases(self, inst: Instance) -> None:
        machine = self.machines[inst.machine_id]
        taken = [
            i
            for i in inst.gpu_indexes
            if (h := machine.holders[i]) is not None and h.kind == "renter"
        ]
        self.set_holders(machine, taken, None)
        self.schedule_waiting(machine, self.sim_now)

    def schedule_waiting(self, machine: Machine, now: float) -> None:
        waiting = [
            i
            for i in sorted(self.instances.values(), key=lambda i: i.id)
            if i.machine_id == machine.id and i.phase is Phase.SCHEDULING
        ]
        for inst in waiting:
            if self.hold_gpus(inst):
                inst.log(now, "daemon", "resources available; starting")
                self.enter_loading(inst, now, cached=True)

    # --- transitions ----------------------------------------------------------------------

    def enter_loading(self, inst: Instance, now: float, *, cached: bool) -> None:
        durations = self.knobs.durations
        inst.enter(Phase.LOADING, now, durations.cached_loading if cached else durations.loading)
        inst.starts += 1
        inst.status_msg = None
        inst.log(now, "daemon", f"{'loading' if cached else 'pulling'} image {inst.image}")
        self.changed = True

    def start_container(self, inst: Instance, now: float) -> None:
        inst.host_generation += 1
        inst.ports = None
        if self.instant_hosts:
            self.run_container(
                inst, now, ssh_port=self.fake_port(), proxy_port=self.fake_port(), pid=None
            )
            return
        inst.enter(Phase.STARTING, now)
        inst.status_msg = "Starting container"
        self.effects.append(HostEffect("start", inst.id, inst.host_generation))
        self.changed = True

    def run_container(
        self, inst: Instance, now: float, *, ssh_port: int, proxy_port: int, pid: int | None
    ) -> None:
        ports: dict[str, int] = {}
        previous = inst.ports or {}
        for name in inst.requested_ports():
            if name == "22/tcp":
                ports[name] = ssh_port
            elif name == "8188/tcp":
                ports[name] = proxy_port
            else:
                ports[name] = previous.get(name) or self.fake_port()
        jupyter = "jupyter" in inst.runtype
        inst.ports = ports
        inst.ran = True
        inst.ssh_port = ssh_port - JUPYTER_SSH_OFFSET if jupyter else ssh_port
        inst.host_pid = pid
        if inst.phase is not Phase.RUNNING:
            inst.enter(Phase.RUNNING, now)
            inst.running_since = now
            mode = "jupyter" if jupyter else ("args" if inst.runtype == "args" else "ssh")
            inst.status_msg = f"success, running {inst.image.replace(':', '_')}/{mode}"
            inst.log(now, "container", f"container started ({mode}); ports {ports}")
        self.changed = True

    def restart_container(self, inst: Instance, phase: Phase, *, wipe: bool) -> None:
        """Reboot (keep the disk) or recycle (wipe it): the container goes down, then up."""
        inst.enter(phase, self.sim_now, self.knobs.durations.reboot)
        inst.ports, inst.running_since, inst.status_msg = None, None, None
        self.stop_host(inst)
        if wipe and not self.instant_hosts:
            self.effects.append(HostEffect("wipe", inst.id, inst.host_generation))

    def host_started(
        self, instance_id: int, generation: int, *, ssh_port: int, proxy_port: int, pid: int
    ) -> bool:
        """A launched host is ready; False if the instance no longer wants it (stop it)."""
        inst = self.instances.get(instance_id)
        if inst is None or inst.host_generation != generation:
            return False
        if inst.phase not in (Phase.STARTING, Phase.RUNNING):
            return False
        self.run_container(inst, self.sim_now, ssh_port=ssh_port, proxy_port=proxy_port, pid=pid)
        return True

    def host_failed(self, instance_id: int, generation: int, reason: str) -> None:
        inst = self.instances.get(instance_id)
        if inst is None or inst.host_generation != generation or inst.phase is not Phase.STARTING:
            return
        inst.enter(Phase.FAILED, self.sim_now)
        inst.status_msg = f"Error response from daemon: OCI runtime create failed: {reason}"
        inst.log(self.sim_now, "daemon", inst.status_msg)
        self.changed = True

    def host_exited(self, instance_id: int, generation: int) -> None:
        inst = self.instances.get(instance_id)
        if inst is None or inst.host_generation != generation or inst.phase is not Phase.RUNNING:
            return
        self.crash(inst, "container exited unexpectedly")

    def crash(self, inst: Instance, why: str) -> None:
        inst.enter(Phase.CRASHED, self.sim_now)
        inst.ports, inst.running_since = None, None
        inst.status_msg = why
        inst.log(self.sim_now, "daemon", why)
        self.stop_host(inst)

    def stop_host(self, inst: Instance) -> None:
        inst.host_pid = None
        if not self.instant_hosts:
            self.effects.append(HostEffect("stop", inst.id, inst.host_generation))
        self.changed = True

    def stop(self, inst: Instance, now: float, why: str) -> None:
        """Stop: release the GPUs (another renter may take them) and stop the container."""
        inst.intended = "stopped"
        if inst.phase is Phase.OFFLINE:
            return
        had_gpus = self.holds(inst)
        inst.enter(Phase.STOPPED, now)
        inst.ports, inst.running_since = None, None
        inst.status_msg = why
        inst.log(now, "daemon", why)
        self.stop_host(inst)
        if had_gpus:
            self.draws += 1
            roll = random.Random(f"{self.seed}:{self.draws}").random()
            taken = inst.give_gpus_on_stop or roll < self.knobs.renter_probability
            inst.give_gpus_on_stop = False
            self.release_gpus(inst, now, to_renter=taken)
            if taken:
                inst.log(now, "daemon", "GPU(s) rented by another client while stopped")

    def start(self, inst: Instance, now: float) -> None:
        inst.intended = "running"
        if inst.phase in (Phase.STOPPED, Phase.SCHEDULING):
            if self.hold_gpus(inst):
                self.enter_loading(inst, now, cached=True)
            elif inst.phase is not Phase.SCHEDULING:
                inst.enter(Phase.SCHEDULING, now, self.knobs.durations.scheduling_timeout)
                inst.status_msg = "Scheduling: waiting for the machine's GPU(s) to be free"
                inst.log(now, "daemon", inst.status_msg)
        elif inst.phase in (Phase.FAILED, Phase.CRASHED):
            self.enter_loading(inst, now, cached=True)
        self.changed = True

    def on_deadline(self, inst: Instance, now: float) -> None:
        phase = inst.phase
        if phase is Phase.CREATING:
            self.enter_loading(inst, now, cached=False)
        elif phase in (Phase.LOADING, Phase.REBOOTING):
            self.start_container(inst, now)
        elif phase is Phase.RECYCLING:
            self.enter_loading(inst, now, cached=False)
        elif phase is Phase.SCHEDULING:
            inst.intended = "stopped"
            inst.enter(Phase.STOPPED, now)
            inst.status_msg = "Error: scheduling timed out; the machine's GPUs are not available"
            inst.log(now, "daemon", inst.status_msg)
            self.changed = True
        else:
            inst.phase_duration = None

    # --- instances --------------------------------------------------------------------------

    def add_instance(self, inst: Instance) -> None:
        self.instances[inst.id] = inst
        self.changed = True

    def remove_instance(self, inst: Instance) -> None:
        if self.holds(inst):
            self.release_gpus(inst, self.sim_now)
        self.stop_host(inst)
        if not self.instant_hosts:
            self.effects.append(HostEffect("wipe", inst.id, inst.host_generation))
        self.closed.append(
            {
                "instance_id": inst.id,
                "label": inst.label,
                "compute": inst.cost_compute,
                "storage": inst.cost_storage,
                "started": inst.created_at,
                "ended": self.sim_now,
            }
        )
        del self.closed[:-1000]
        del self.instances[inst.id]
        self.changed = True

    def take_effects(self) -> list[HostEffect]:
        effects, self.effects = self.effects, []
        return effects
