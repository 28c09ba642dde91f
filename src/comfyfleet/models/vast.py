"""Typed Vast.ai values: offers, instances, SSH keys, the account.

The Vast adapter parses the API's JSON into these at its boundary; everything above it (the
database, services, the pool) sees only these. Units follow the API (MB for RAM, GB for disk,
$/hour for prices, epoch seconds for dates) and are named in the field comments.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strip_strings(cls, value: Any) -> Any:
        # Vast pads some strings (public_ipaddr, local_ipaddrs) with spaces and newlines.
        return value.strip() if isinstance(value, str) else value


class Offer(_Model):
    """A rentable bundle of GPUs on one machine (`POST /bundles/` result row)."""

    id: int  # the offer (ask) id: single use, gone after a create
    machine_id: int
    host_id: int | None = None
    gpu_name: str
    num_gpus: int
    gpu_ram: float = 0.0  # MB per GPU
    gpu_total_ram: float = 0.0  # MB over all GPUs
    cpu_cores_effective: float = 0.0
    cpu_ram: float = 0.0  # MB
    disk_space: float = 0.0  # GB that can be allocated
    dph_base: float = 0.0  # $/h without storage
    dph_total: float  # $/h including storage for the searched allocated_storage
    storage_cost: float = 0.0  # $/GB/month
    min_bid: float | None = None  # $/h, interruptible
    reliability: float | None = Field(None, alias="reliability2")
    dlperf: float | None = None
    dlperf_per_dphtotal: float | None = None
    score: float | None = None
    cuda_max_good: float | None = None  # highest CUDA version the host driver supports
    driver_version: str | None = None
    compute_cap: int | None = None  # x100 (890 = 8.9)
    inet_down: float | None = None  # Mb/s
    inet_up: float | None = None
    inet_down_cost: float | None = None  # $/GB
    inet_up_cost: float | None = None
    direct_port_count: int | None = None
    geolocation: str | None = None
    verification: str | None = None
    rentable: bool | None = None
    static_ip: bool | None = None
    hosting_type: int | None = None  # 1 = datacenter
    cpu_arch: str | None = None
    os_version: str | None = None

    @property
    def vram_gb(self) -> float:
        return round(self.gpu_ram / 1024, 1)

    def storage_dph(self, disk_gb: float) -> float:
        """$/h of storage for `disk_gb` (Vast: storage_cost $/GB/month over 720 hours)."""
        return self.storage_cost * disk_gb / 720.0


class InstanceStatus(StrEnum):
    """What an instance is doing, normalised from actual/intended/cur state and status_msg."""

    CREATING = "creating"  # accepted, no container yet (actual_status null)
    LOADING = "loading"  # pulling the image / creating the container
    RUNNING = "running"  # container running (ComfyUI may still be provisioning)
    SCHEDULING = "scheduling"  # asked to run, waiting for its GPU (may wait forever)
    STOPPED = "stopped"  # exited / stopped; storage still billed
    OFFLINE = "offline"  # the host lost contact
    FAILED = "failed"  # container could not start (status_msg carries the error)
    REBOOTING = "rebooting"
    UNKNOWN = "unknown"  # a value this version does not know
    DESTROYED = "destroyed"  # gone from the API


class Instance(_Model):
    """One rented instance (contract), as `GET /instances/` reports it."""

    id: int
    machine_id: int | None = None
    label: str | None = None
    actual_status: str | None = None
    intended_status: str | None = None
    cur_state: str | None = None
    status_msg: str | None = None
    image_uuid: str | None = None
    image_runtype: str | None = None
    gpu_name: str | None = None
    num_gpus: int | None = None
    gpu_ram: float | None = None
    gpu_util: float | None = None
    cuda_max_good: float | None = None
    disk_space: float | None = None  # GB allocated
    dph_total: float | None = None
    dph_base: float | None = None
    storage_total_cost: float | None = None  # $/h of storage, billed in every state
    public_ipaddr: str | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    ports: dict[str, int] = Field(default_factory=dict)  # "8188/tcp" -> host port
    geolocation: str | None = None
    start_date: float | None = None
    end_date: float | None = None
    jupyter_token: str | None = Field(None, exclude=True, repr=False)
    env_keys: tuple[str, ...] = ()  # names of extra_env entries; values are never kept

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> dict[str, int]:
        # Docker-style {"8188/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40188"}, ...]};
        # null before the container runs; HostPort is a string.
        out: dict[str, int] = {}
        if not isinstance(value, dict):
            return out
        for key, bindings in value.items():
            if isinstance(bindings, int):
                out[str(key)] = bindings
                continue
            for binding in bindings or []:
                port = binding.get("HostPort") if isinstance(binding, dict) else None
                if port not in (None, ""):
                    out[str(key)] = int(port)
                    break
        return out

    @property
    def status(self) -> InstanceStatus:
        return instance_status(self.actual_status, self.intended_status, self.status_msg)

    def host_port(self, container_port: int, proto: str = "tcp") -> int | None:
        return self.ports.get(f"{container_port}/{proto}")

    def ssh_endpoint(self) -> tuple[str, int] | None:
        """Direct SSH (public IP + mapped 22) when open, else Vast's SSH proxy."""
        direct = self.host_port(22)
        if direct and self.public_ipaddr:
            return self.public_ipaddr, direct
        if self.ssh_host and self.ssh_port:
            # Vast's proxy listens one port higher for jupyter launches.
            bump = 1 if self.image_runtype and "jupyter" in self.image_runtype else 0
            return self.ssh_host, self.ssh_port + bump
        return None


def instance_status(
    actual: str | None, intended: str | None, status_msg: str | None = None
) -> InstanceStatus:
    """Normalise Vast's status fields; unknown future values map to UNKNOWN, never raise."""
    msg = (status_msg or "").lower()
    if actual == "created" and ("error" in msg or "oci runtime" in msg):
        return InstanceStatus.FAILED
    if actual == "offline":
        return InstanceStatus.OFFLINE
    if actual == "running":
        return InstanceStatus.STOPPED if intended == "stopped" else InstanceStatus.RUNNING
    if actual in {"rebooting", "recycling"}:
        return InstanceStatus.REBOOTING
    if actual == "loading":
        return InstanceStatus.LOADING
    if actual is None:
        return InstanceStatus.STOPPED if intended == "stopped" else InstanceStatus.CREATING
    if actual in {"exited", "stopped", "created"}:
        return InstanceStatus.SCHEDULING if intended == "running" else InstanceStatus.STOPPED
    return InstanceStatus.UNKNOWN


class SshKey(_Model):
    """An SSH public key registered with the account."""

    id: int
    public_key: str
    created_at: float | str | None = None


class VastUser(_Model):
    """The account (`GET /users/current/`); the raw answer's api_key is never kept."""

    id: int
    email: str | None = None
    credit: float = 0.0  # $ balance
    balance: float | None = None
    has_billing: bool | None = None
