"""The JSON shapes the simulated API answers with: instances, the user, SSH keys.

Instance rows carry exactly the fields of the captured fixtures (fixtures/vast/instance-*.json)
with the same types: `ports` null until the container runs, `HostPort` strings, extra_env as
[key, value] pairs, public_ipaddr with a trailing newline on some machines (as on Vast).
"""

from __future__ import annotations

import zlib
from typing import Any

from comfyfleet.sandbox.vast.instance import Instance, Phase
from comfyfleet.sandbox.vast.market import Machine, prices
from comfyfleet.sandbox.vast.world import SshKey, World

SANDBOX_IP = "127.0.0.1"
#: Columns of GET /api/v1/instances/ that select_filters and order_by accept (stored ones).
FILTERABLE_COLUMNS = frozenset(
    {
        "id",
        "label",
        "actual_status",
        "intended_status",
        "cur_state",
        "next_state",
        "gpu_name",
        "verification",
        "machine_id",
        "host_id",
        "template_id",
        "template_hash_id",
        "image_uuid",
        "start_date",
        "end_date",
        "geolocation",
        "status_msg",
    }
)


def _image_gb(image: str) -> float:
    return 4.0 + (zlib.crc32(image.encode()) % 80) / 10.0


def status_msg(inst: Instance, now: float, nominal_loading: float) -> str | None:
    """status_msg as the host daemon would report it now (pull progress while loading)."""
    if inst.phase is Phase.LOADING:
        if inst.phase_duration is not None and inst.phase_duration < nominal_loading:
            return f"Starting container from cached image {inst.image}"
        size = _image_gb(inst.image)
        done = min((now - inst.phase_since) / max(nominal_loading, 1e-9), 0.97) * size
        return f"Pulling image {inst.image} ... {done:.1f}GB/{size:.1f}GB"
    return inst.status_msg


def _states(inst: Instance) -> tuple[str, str]:
    if inst.phase is Phase.SCHEDULING:
        return "stopped", "running"
    if inst.phase is Phase.STOPPED or inst.intended == "stopped":
        return "stopped", "stopped"
    return "running", "running"


def _ports(inst: Instance) -> dict[str, list[dict[str, str]]] | None:
    if inst.ports is None:
        return None
    return {
        name: [{"HostIp": "0.0.0.0", "HostPort": str(p)}, {"HostIp": "::", "HostPort": str(p)}]
        for name, p in inst.ports.items()
    }


def instance_row(world: World, inst: Instance) -> dict[str, Any]:
    """One instance as GET /instances/ lists it (every field of the fixtures)."""
    machine: Machine = world.machines[inst.machine_id]
    base = machine.base
    now = world.sim_now
    running = inst.phase is Phase.RUNNING
    cur_state, next_state = _states(inst)
    price = prices(
        inst.dph_base,
        inst.storage_cost,
        inst.disk,
        float(base["dlperf"]),
        float(base["total_flops"]),
        float(base["reliability2"]),
    )
    offer_score = prices(
        float(base["dph_base"]),
        inst.storage_cost,
        5.0,
        float(base["dlperf"]),
        float(base["total_flops"]),
        float(base["reliability2"]),
    )["score"]
    charged = dict(price["instance"])
    if inst.phase not in (Phase.RUNNING, Phase.REBOOTING):
        charged.update(gpuCostPerHour=0, totalHour=price["storage_total_cost"])
        charged["discountedTotalPerHour"] = price["storage_total_cost"]
    ports = inst.ports or {}
    template = inst.template or {}
    disk_used = round(min(inst.disk * 0.25, 18.0 + inst.disk * 0.05), 1) if inst.ran else -1
    return {
        "id": inst.id,
        "machine_id": machine.id,
        "host_id": base["host_id"],
        "bundle_id": base["bundle_id"],
        "actual_status": inst.actual_status,
        "intended_status": inst.intended,
        "cur_state": cur_state,
        "next_state": next_state,
        "status_msg": status_msg(inst, now, world.knobs.durations.loading),
        "label": inst.label,
        "template_id": template.get("id"),
        "template_hash_id": template.get("hash_id"),
        "template_name": template.get("name"),
        "image_uuid": inst.image,
        "image_args": list(inst.args),
        "image_runtype": inst.runtype,
        "extra_env": [list(pair) for pair in inst.env],
        "onstart": inst.onstart,
        "jupyter_token": inst.jupyter_token,
        "public_ipaddr": SANDBOX_IP + ("\n" if machine.pads_ip else ""),
        "local_ipaddrs": f"172.17.0.2 10.10.{machine.id % 250}.{inst.id % 250}\n",
        "ssh_host": SANDBOX_IP,
        "ssh_idx": "0",
        "ssh_port": inst.ssh_port,
        "machine_dir_ssh_port": 20_000 + inst.id % 20_000,
        "start_date": inst.created_at,
        "end_date": machine.end_date,
        "uptime_mins": round((now - inst.running_since) / 60, 2)
        if running and inst.running_since is not None
        else None,
        "duration": round(now - inst.created_at, 1),
        "num_gpus": inst.num_gpus,
        "gpu_name": base["gpu_name"],
        "gpu_arch": base["gpu_arch"],
        "gpu_ram": base["gpu_ram"],
        "gpu_totalram": base["gpu_ram"] * inst.num_gpus,
        "gpu_util": 0.0 if running else None,
        "gpu_temp": 41.0 if running else None,
        "gpu_frac": base["gpu_frac"],
        "gpu_lanes": base["gpu_lanes"],
        "gpu_mem_bw": base["gpu_mem_bw"],
        "bw_nvlink": base["bw_nvlink"],
        "cuda_max_good": base["cuda_max_good"],
        "driver_version": base["driver_version"],
        "compute_cap": base["compute_cap"],
        "cpu_name": base["cpu_name"],
        "cpu_arch": base["cpu_arch"],
        "cpu_cores": base["cpu_cores"],
        "cpu_cores_effective": base["cpu_cores_effective"],
        "cpu_ram": base["cpu_ram"],
        "cpu_util": 0.03 if running else 0.0,
        "mem_limit": round(base["cpu_ram"] / 1000, 1) if running else None,
        "mem_usage": 3.91 if running else None,
        "vmem_usage": 0.52 if running else None,
        "disk_name": base["disk_name"],
        "disk_space": inst.disk,
        "disk_bw": base["disk_bw"],
        "disk_usage": disk_used,
        "disk_util": round(disk_used / inst.disk, 4) if disk_used >= 0 else -1,
        "inet_up": base["inet_up"],
        "inet_down": base["inet_down"],
        "inet_up_cost": base["inet_up_cost"],
        "inet_down_cost": base["inet_down_cost"],
        "direct_port_count": base["direct_port_count"],
        "direct_port_start": min(ports.values()) if ports else -1,
        "direct_port_end": max(ports.values()) if ports else -1,
        "ports": _ports(inst),
        "static_ip": base["static_ip"],
        "geolocation": base["geolocation"],
        "country_code": str(base["geolocation"]).rsplit(",", 1)[-1].strip(),
        "verification": base["verification"],
        "rentable": True,
        "external": base["external"],
        "hosting_type": base["hosting_type"],
        "min_bid": base["min_bid"],
        "is_bid": inst.is_bid,
        "dph_base": inst.dph_base,
        "storage_cost": inst.storage_cost,
        "storage_total_cost": price["storage_total_cost"],
        "dph_total": price["dph_total"],
        "vram_costperhour": base["vram_costperhour"],
        "dlperf": base["dlperf"],
        "dlperf_per_dphtotal": price["dlperf_per_dphtotal"],
        "total_flops": base["total_flops"],
        "flops_per_dphtotal": price["flops_per_dphtotal"],
        "score": offer_score,
        "reliability2": base["reliability2"],
        "os_version": base["os_version"],
        "mobo_name": base["mobo_name"],
        "pci_gen": base["pci_gen"],
        "pcie_bw": base["pcie_bw"],
        "logo": base["logo"],
        "webpage": base["webpage"],
        "search": price["search"],
        "instance": charged,
        "credit_balance": None,
        "credit_discount": None,
        "credit_discount_max": base["credit_discount_max"],
        "client_run_time": 0.0,
        "host_run_time": 0.0,
        "time_remaining": "",
        "time_remaining_isbid": "",
        "volume_info": [],
    }


def select_columns(row: dict[str, Any], columns: list[str] | None) -> dict[str, Any]:
    """Keep `columns` (unknown ones come back as null), or every column when None / ["*"]."""
    if not columns or columns == ["*"]:
        return row
    return {c: row.get(c) for c in columns}


def user_row(world: World) -> dict[str, Any]:
    account = world.account
    credit = round(account.credit, 6)
    first_key = world.ssh_keys[0].key if world.ssh_keys else None
    return {
        "id": account.id,
        "username": account.username,
        "user": account.username,
        "email": account.email,
        "fullname": "Sandbox User",
        "api_key": account.api_key,
        "credit": credit,
        "balance": credit,
        "ssh_key": first_key,
        "key_id": world.ssh_keys[0].id if world.ssh_keys else None,
        "sid": f"sandbox-{account.id}",
        "email_verified": True,
        "has_billing": True,
        "has_payout": False,
        "can_pay": True,
        "balance_threshold": 0.0,
        "balance_threshold_enabled": False,
        "billaddress_city": None,
        "billaddress_country": None,
        "billaddress_line1": None,
        "billaddress_line2": None,
        "billaddress_zip": None,
        "billed_expected": 0.0,
        "billed_verified": 0.0,
        "billing_creditonly": True,
        "got_signup_credit": True,
        "host_agreement_accepted": False,
        "last4": None,
        "paid_expected": 0.0,
        "paid_verified": 0.0,
        "password_resettable": False,
        "paypal_email": None,
    }


def key_row(world: World, key: SshKey) -> dict[str, Any]:
    # The docs show both "key" and "public_key" (UNVERIFIED which the list uses): send both.
    return {
        "id": key.id,
        "user_id": world.account.id,
        "key": key.key,
        "public_key": key.key,
        "created_at": key.created_at,
        "deleted_at": None,
    }
