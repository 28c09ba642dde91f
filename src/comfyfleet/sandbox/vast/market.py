"""The market: machines, the GPUs on them, and the offers they make.

Each machine rents its GPUs in bundles of `chunk` (the offer's num_gpus) and shows at most one
offer at a time: the lowest-numbered free GPUs. Whenever the free set changes the machine
re-offers under a NEW offer id, so ids are single use, as on Vast. The market holds the
fixture offers (shipped in this package) plus machines generated from a seed.

Prices follow the reference's §5.2 formula: storage_total_cost = storage_cost x GB / 720,
dph_total = dph_base + storage_total_cost, recomputed for the `allocated_storage` a search
asks about; dlperf_per_dphtotal, flops_per_dphtotal and score (= DLP/$ x reliability^4, which
is how the fixture's numbers relate) follow from it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from comfyfleet.sandbox.vast import catalog

#: Offer fields that change with time, price basis or renting; everything else is static.
DYNAMIC_OFFER_KEYS = frozenset(
    {
        "id",
        "ask_contract_id",
        "gpu_ids",
        "storage_total_cost",
        "dph_total",
        "dph_total_adj",
        "discounted_dph_total",
        "discount_rate",
        "discounted_hourly",
        "dlperf_per_dphtotal",
        "flops_per_dphtotal",
        "score",
        "search",
        "instance",
        "rented",
        "is_bid",
        "rentable",
        "duration",
        "end_date",
        "rn",
    }
)
FIRST_GENERATED_OFFER_ID = 20_300_000
GENERATED_MACHINES = 72
DAY = 86_400.0


@dataclass
class Holder:
    """Who holds one GPU: one of our instances, or another (simulated) renter until a time."""

    kind: str  # "instance" | "renter"
    instance_id: int | None = None
    until: float | None = None  # a renter gives the GPU back then (None: never)


@dataclass
class Machine:
    id: int
    base: dict[str, Any]  # the static offer fields for one bundle of `chunk` GPUs
    total_gpus: int
    chunk: int
    end_date: float
    holders: list[Holder | None]
    offer_id: int | None = None
    offer_gpus: list[int] = field(default_factory=list)
    pads_ip: bool = False  # reports public_ipaddr with a trailing newline, as some hosts do

    def free_gpus(self) -> list[int]:
        return [i for i, h in enumerate(self.holders) if h is None]

    def gpu_ids(self, indexes: list[int]) -> list[int]:
        return [self.id * 10 + i for i in indexes]

    def refresh_offer(self, next_offer_id: Callable[[], int]) -> None:
        """Offer the lowest free bundle; a changed bundle gets a new id, none if too few free."""
        free = self.free_gpus()
        want = free[: self.chunk] if len(free) >= self.chunk else []
        if not want:
            self.offer_id, self.offer_gpus = None, []
        elif self.offer_id is None or want != self.offer_gpus:
            self.offer_id, self.offer_gpus = next_offer_id(), want

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Machine:
        holders = [None if h is None else Holder(**h) for h in data["holders"]]
        return cls(**{**data, "holders": holders})


def prices(
    dph_compute: float, storage_cost: float, disk_gb: float, dlperf: float, flops: float, rel: float
) -> dict[str, Any]:
    """The price-derived fields for `disk_gb` of storage (reference §5.2)."""
    storage = round(storage_cost * disk_gb / 720.0, 6)
    total = round(dph_compute + storage, 6)
    per_dollar = round(dlperf / total, 4) if total > 0 else 0.0
    breakdown = {
        "gpuCostPerHour": round(dph_compute, 6),
        "diskHour": storage,
        "totalHour": total,
        "discountTotalHour": 0,
        "discountedTotalPerHour": total,
    }
    return {
        "storage_total_cost": storage,
        "dph_total": total,
        "dph_total_adj": total,
        "discounted_dph_total": total,
        "dlperf_per_dphtotal": per_dollar,
        "flops_per_dphtotal": round(flops / total, 4) if total > 0 else 0.0,
        "score": round(per_dollar * rel**4, 4),
        "search": dict(breakdown),
        "instance": dict(breakdown),
    }


def render_offer(
    machine: Machine, now: float, allocated_storage: float, kind: str, rented: bool
) -> dict[str, Any]:
    """One offer row as `POST /bundles/` returns it, priced for `allocated_storage` GB."""
    base = machine.base
    offer = dict(base)
    bid = kind == "bid"
    compute = float(base["min_bid"]) if bid else float(base["dph_base"])
    offer.update(
        prices(
            compute,
            float(base["storage_cost"]),
            allocated_storage,
            float(base["dlperf"]),
            float(base["total_flops"]),
            float(base["reliability2"]),
        )
    )
    if kind == "reserved":
        # Prepaid discount (UNVERIFIED shape): half the largest prepay discount.
        rate = round(float(base["credit_discount_max"]) / 2, 4)
        offer["discount_rate"] = rate
        offer["discounted_hourly"] = round(offer["dph_total"] * rate, 6)
        offer["discounted_dph_total"] = round(offer["dph_total"] * (1 - rate), 6)
    else:
        offer["discount_rate"] = 0.0
        offer["discounted_hourly"] = 0.0
    offer.update(
        id=machine.offer_id,
        ask_contract_id=machine.offer_id,
        gpu_ids=machine.gpu_ids(machine.offer_gpus),
        rented=rented,
        is_bid=bid,
        rentable=True,
        end_date=machine.end_date,
        duration=round(machine.end_date - now, 1),
        rn=1,
    )
    return offer


# --- building the market ------------------------------------------------------------------


def packaged_offers() -> list[dict[str, Any]]:
    """The fixture offers shipped inside the package (data/offers.json)."""
    text = resources.files(__package__).joinpath("data/offers.json").read_text("utf-8")
    offers: list[dict[str, Any]] = json.loads(text)["offers"]
    return offers


def _static(offer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in offer.items() if k not in DYNAMIC_OFFER_KEYS}


def _from_fixture(offer: dict[str, Any], now: float) -> Machine:
    chunk = int(offer["num_gpus"])
    total = max(chunk, round(chunk / float(offer["gpu_frac"])))
    first = int(offer["gpu_ids"][0]) - int(offer["machine_id"]) * 10
    holders: list[Holder | None] = [None] * total
    machine = Machine(
        id=int(offer["machine_id"]),
        base=_static(offer),
        total_gpus=total,
        chunk=chunk,
        end_date=now + float(offer["duration"]),
        holders=holders,
        offer_id=int(offer["id"]),
        offer_gpus=list(range(first, first + chunk)),
    )
    return machine


def build_market(seed: int, now: float) -> tuple[list[Machine], int]:
    """Fixture machines plus GENERATED_MACHINES from `seed`; returns them and the next offer id."""
    machines = [_from_fixture(o, now) for o in packaged_offers()]
    rng = random.Random(seed)
    next_id = FIRST_GENERATED_OFFER_ID
    models = list(catalog.GPU_MODELS)
    # Every model at least once, then a weighted mix.
    picks = models + rng.choices(
        models, weights=[m.weight for m in models], k=GENERATED_MACHINES - len(models)
    )
    for index, model in enumerate(picks):
        machine = _generate(rng, index, model, now)
        machine.offer_id, machine.offer_gpus = next_id, list(range(machine.chunk))
        next_id += 1
        machines.append(machine)
    return machines, next_id


def _generate(rng: random.Random, index: int, model: catalog.GpuModel, now: float) -> Machine:
    datacenter = model.datacenter or rng.random() < 0.15
    total = rng.choices([1, 2, 4, 8], weights=[1, 2, 3, 4] if datacenter else [5, 3, 2, 1])[0]
    chunk = rng.choice([c for c in (1, 1, 2, 4, 8) if c <= total])
    machine_id = 11_000 + index * 13
    location = rng.choice(catalog.LOCATIONS)
    verify_roll = rng.random()
    verification = (
        "verified"
        if verify_roll < (0.97 if datacenter else 0.85)
        else ("unverified" if verify_roll < 0.98 else "deverified")
    )
    reliability = round(rng.uniform(0.985, 0.9999) if datacenter else rng.uniform(0.9, 0.999), 4)
    driver, cuda = catalog.DRIVERS[rng.randint(model.min_driver, len(catalog.DRIVERS) - 1)]
    dph_base = round(round(rng.uniform(*model.price), 3) * chunk, 4)
    storage_cost = rng.choice([0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3])
    inet_down = round(rng.uniform(2000, 10000) if datacenter else rng.uniform(80, 2000), 1)
    inet_up = round(inet_down * rng.uniform(0.3, 1.0), 1)
    inet_cost = rng.choice([0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01])
    cpu_name, cpu_cores, cpu_ghz = rng.choice(catalog.CPUS)
    disk_name, disk_bw = rng.choice(catalog.DISKS)
    pci_gen = rng.choice([3.0, 4.0, 4.0, 5.0])
    dlperf = round(model.dlperf * chunk * rng.uniform(0.92, 1.05), 1)
    flops = round(model.tflops * chunk, 1)
    sxm = "SXM" in model.name or model.name == "H200"
    start = now - rng.uniform(1, 60) * DAY
    base: dict[str, Any] = {
        "bundle_id": 900_000_100 + index,
        "bundled_results": None,
        "machine_id": machine_id,
        "host_id": 60_000 + index * 3,
        "hostname": None,
        "num_gpus": chunk,
        "gpu_name": model.name,
        "gpu_arch": "nvidia",
        "gpu_ram": model.vram_mb,
        "gpu_total_ram": model.vram_mb * chunk,
        "gpu_frac": round(chunk / total, 4),
        "gpu_lanes": rng.choice([16, 16, 16, 8]),
        "gpu_mem_bw": model.mem_bw,
        "gpu_max_power": model.max_power,
        "gpu_max_temp": 83.0,
        "gpu_display_active": (not datacenter) and rng.random() < 0.05,
        "compute_cap": model.compute_cap,
        "cuda_max_good": cuda,
        "driver_version": driver,
        "driver_vers": catalog.numeric_driver(driver),
        "bw_nvlink": (600.0 if model.name.startswith("A100") else 900.0)
        if sxm and chunk > 1
        else 0.0,
        "cpu_name": cpu_name,
        "cpu_arch": "amd64",
        "cpu_cores": cpu_cores,
        "cpu_cores_effective": round(cpu_cores * chunk / total, 1),
        "cpu_ghz": cpu_ghz,
        "cpu_ram": int(rng.choice([64412, 128760, 257654, 515860]) * chunk / total),
        "has_avx": 1,
        "disk_space": round(rng.uniform(100, 3000), 1),
        "disk_bw": disk_bw,
        "disk_name": disk_name,
        "inet_up": inet_up,
        "inet_down": inet_down,
        "inet_up_cost": inet_cost,
        "inet_down_cost": inet_cost,
        "internet_up_cost_per_tb": round(inet_cost * 1024, 3),
        "internet_down_cost_per_tb": round(inet_cost * 1024, 3),
        "direct_port_count": 0
        if rng.random() < 0.15
        else rng.choice([20, 40, 64, 100, 120, 200, 500, 999]),
        "static_ip": datacenter or rng.random() < 0.3,
        "public_ipaddr": f"198.51.100.{index + 10}",
        "pci_gen": pci_gen,
        "pcie_bw": {3.0: 12.1, 4.0: 24.6, 5.0: 49.2}[pci_gen],
        "mobo_name": rng.choice(catalog.MOBOS),
        "os_version": rng.choice(catalog.OS_VERSIONS),
        "dph_base": dph_base,
        "storage_cost": storage_cost,
        "vram_costperhour": round(dph_base / (model.vram_mb * chunk / 1000), 6),
        "min_bid": round(dph_base * 0.45, 4),
        "credit_discount_max": 0.4,
        "dlperf": dlperf,
        "total_flops": flops,
        "reliability": reliability,
        "reliability2": reliability,
        "reliability_mult": reliability,
        "expected_reliability": reliability,
        "verification": verification,
        "vericode": 1 if verification == "verified" else 0,
        "external": False,
        "hosting_type": 1 if datacenter else 0,
        "datacenter": datacenter,
        "geolocation": location,
        "geolocode": catalog.geolocode(location),
        "vms_enabled": False,
        "is_vm_deverified": False,
        "resource_type": "gpu",
        "cluster_id": None,
        "logo": "/static/logos/vastai_small2.png",
        "webpage": None,
        "start_date": round(start, 1),
        "avail_vol_ask_id": None,
        "avail_vol_dph": None,
        "avail_vol_size": None,
        "nw_disk_min_bw": None,
        "nw_disk_max_bw": None,
        "nw_disk_avg_bw": None,
        "platform_fee": None,
        "time_remaining": "",
        "time_remaining_isbid": "",
    }
    return Machine(
        id=machine_id,
        base=base,
        total_gpus=total,
        chunk=chunk,
        end_date=round(now + rng.uniform(7, 120) * DAY, 1),
        holders=[None] * total,
        pads_ip=rng.random() < 0.25,
    )
