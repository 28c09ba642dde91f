"""Instance use-cases: list, show, stop, start, destroy, rename — each after a reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyfleet.control.costs import CostBreakdown, StatusSpan, accrued_cost
from comfyfleet.errors import (
    UsageError,
    VastError,
    VastRateLimited,
    VastServerError,
    VastUnreachable,
)
from comfyfleet.models.vast import Instance, InstanceStatus
from comfyfleet.remote.tunnel_state import TunnelRecord, TunnelState, list_tunnels
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.reconcile import Action, reconcile
from comfyfleet.state import EventKind, InstanceEvent, InstanceRow
from comfyfleet.state.rows import parse_status, vast_label


@dataclass(frozen=True)
class InstanceView:
    """An instance as the user sees it: the row, its ComfyUI URL and its cost so far."""

    row: InstanceRow
    url: str | None
    cost: CostBreakdown
    tunnel: TunnelState | None = None  # an open `comfyfleet connect` tunnel to it

    def to_json(self) -> dict[str, Any]:
        r = self.row
        return {
            "id": r.vast_id,
            "local_id": r.id,
            "name": r.name,
            "label": r.label,
            "pool": r.pool,
            "status": r.status.value,
            "status_msg": r.status_msg,
            "ready": r.ready_at is not None,
            "gpu": f"{r.num_gpus or 1}x {r.gpu_name}" if r.gpu_name else None,
            "dph_total": r.dph_total,
            "storage_dph": r.storage_dph,
            "image": r.image,
            "disk_gb": r.disk_gb,
            "ssh": f"root@{r.ssh_host}:{r.ssh_port}" if r.ssh_host and r.ssh_port else None,
            "public_ip": r.public_ip,
            "url": self.url,
            "created_at": r.created_at,
            "running_at": r.running_at,
            "ready_at": r.ready_at,
            "destroyed_at": r.destroyed_at,
            "cost_usd": round(self.cost.total_usd, 6),
            "running_seconds": round(self.cost.running_seconds, 1),
            "tunnel": None
            if self.tunnel is None
            else {"status": self.tunnel.status, "url": self.tunnel.url, "since": self.tunnel.since},
        }


def cost_of(
    cloud: Cloud, row: InstanceRow, events: list[InstanceEvent] | None = None
) -> CostBreakdown:
    """What `row` has cost so far (until it was destroyed, else until now)."""
    history = events if events is not None else cloud.db.instances.events(row.id)
    spans = [
        StatusSpan(e.at, parse_status(e.to_status))
        for e in history
        if e.kind in (EventKind.STATUS, EventKind.DESTROYED) and e.to_status
    ]
    until = row.destroyed_at if row.destroyed_at is not None else cloud.clock.now()
    start = row.running_at if row.created_at == 0 else row.created_at
    return accrued_cost(
        spans,
        created_at=start or until,
        until=until,
        dph_total=row.dph_total,
        storage_dph=row.storage_dph,
    )


def view(
    cloud: Cloud, row: InstanceRow, tunnels: Mapping[str, TunnelRecord] | None = None
) -> InstanceView:
    endpoint = comfy_endpoint(cloud, row) if row.live else None
    record = (tunnels or {}).get(str(row.vast_id))
    tunnel = record.state if record is not None and row.live else None
    return InstanceView(row, endpoint.url if endpoint else None, cost_of(cloud, row), tunnel)


async def list_instances(
    cloud: Cloud, *, all_: bool = False
) -> tuple[list[InstanceView], list[Action]]:
    """Every live instance (with `all_`, destroyed ones too), after a reconcile."""
    actions = await reconcile(cloud)
    return _views(cloud, all_=all_), actions


#: Vast failures that say nothing about the instances: the last recorded state stands.
TRANSIENT = (VastUnreachable, VastServerError, VastRateLimited)


async def list_last_known(
    cloud: Cloud, *, all_: bool = False
) -> tuple[list[InstanceView], list[Action], VastError | None]:
    """As `list_instances`; when Vast cannot be reached (or fails for now), the instances as
    last recorded, with that error: statuses and costs may be out of date."""
    try:
        views, actions = await list_instances(cloud, all_=all_)
    except TRANSIENT as exc:
        return _views(cloud, all_=all_), [], exc
    return views, actions, None


async def show_last_known(cloud: Cloud, ref: str) -> tuple[InstanceRow, VastError | None]:
    """Instance `ref` freshly read from Vast; when Vast cannot be reached, as last recorded
    (with that error)."""
    try:
        return await refresh(cloud, await find(cloud, ref)), None
    except TRANSIENT as exc:
        return cloud.db.instances.find(ref), exc


def _views(cloud: Cloud, *, all_: bool) -> list[InstanceView]:
    rows = cloud.db.instances.all() if all_ else cloud.db.instances.live()
    tunnels = {r.state.instance_ref: r for r in list_tunnels(cloud.config.data_dir / "tunnels")}
    return [view(cloud, r, tunnels) for r in rows if r.vast_id is not None]


async def find(cloud: Cloud, ref: str) -> InstanceRow:
    """Reconcile, then the live instance `ref` (Vast id, name, `#local`)."""
    await reconcile(cloud)
    row = cloud.db.instances.find(ref)
    if not row.live or row.vast_id is None:
        raise UsageError(f"instance {ref!r} is destroyed", hint="comfyfleet ls shows the live ones")
    return row


async def observe(cloud: Cloud, row: InstanceRow) -> tuple[InstanceRow, Instance | None]:
    """Re-read one instance from Vast and record it (None: it is gone, marked destroyed)."""
    assert row.vast_id is not None
    inst = await cloud.vast.show_instance(row.vast_id)
    if inst is None:
        return cloud.db.instances.mark_destroyed(row.id, reason="no longer listed by Vast"), None
    updated, _ = cloud.db.instances.upsert_from_vast(inst)
    return updated, inst


async def refresh(cloud: Cloud, row: InstanceRow) -> InstanceRow:
    """Re-read one instance from Vast (its endpoints may have changed)."""
    return (await observe(cloud, row))[0]


async def stop(cloud: Cloud, ref: str) -> InstanceRow:
    row = await find(cloud, ref)
    assert row.vast_id is not None
    await cloud.vast.stop(row.vast_id)
    cloud.db.instances.record_event(row.id, EventKind.STOPPED)
    return await refresh(cloud, row)


async def start(cloud: Cloud, ref: str) -> InstanceRow:
    row = await find(cloud, ref)
    assert row.vast_id is not None
    await cloud.vast.start(row.vast_id)
    cloud.db.instances.record_event(row.id, EventKind.STARTED)
    return await refresh(cloud, row)


async def destroy(cloud: Cloud, ref: str) -> InstanceRow:
    """Destroy `ref`; "not found" on Vast is success (it is gone either way)."""
    row = await find(cloud, ref)
    assert row.vast_id is not None
    existed = await cloud.vast.destroy(row.vast_id)
    reason = "destroyed by the user" if existed else "already gone from Vast"
    return cloud.db.instances.mark_destroyed(row.id, reason=reason)


async def rename(cloud: Cloud, ref: str, new_name: str) -> InstanceRow:
    """Give an instance a new name; the tracking tag in Vast's label is kept."""
    row = await find(cloud, ref)
    assert row.vast_id is not None
    if new_name.isdigit():
        raise UsageError(f"name {new_name!r} is a number", hint="names start with a letter")
    renamed = cloud.db.instances.rename(str(row.vast_id), new_name)
    await cloud.vast.set_label(row.vast_id, vast_label(row.label, new_name))
    return renamed


def is_billing(row: InstanceRow) -> bool:
    """Whether Vast charges for `row` now (storage bills in every state until destroyed)."""
    return row.live and row.status is not InstanceStatus.DESTROYED
