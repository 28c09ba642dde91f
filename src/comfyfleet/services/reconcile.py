"""Reconcile: make the database and Vast agree, and destroy what nobody tracks.

Runs before every command that talks to Vast. Every instance carrying our tracking tag is
matched with its create intent: a completed intent -> the instance is adopted (its row is
updated); an intent that never completed (the CLI died between create and record), failed, or
was cleaned -> the instance is destroyed ("reaped"). Rows whose instance left Vast are marked
destroyed. A pending intent whose process is alive on this machine is left alone (its create
may be in flight) until the grace period has passed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from comfyfleet.errors import VastError
from comfyfleet.models.vast import Instance
from comfyfleet.services.cloud import Cloud
from comfyfleet.state import Intent, IntentStatus
from comfyfleet.state.rows import tracking_tag
from comfyfleet.util.processes import pid_alive


@dataclass(frozen=True)
class Action:
    """One thing reconcile did (or could not do), for the user to see."""

    kind: str  # adopted | reaped | gone | abandoned | foreign | failed
    vast_id: int | None
    label: str
    detail: str

    def describe(self) -> str:
        who = f"instance {self.vast_id}" if self.vast_id is not None else self.label
        return f"{self.kind}: {who}: {self.detail}"


def owner_fields() -> dict[str, object]:
    """What a create intent records about the process that makes it (to spot live owners)."""
    return {"owner_pid": os.getpid(), "owner_host": socket.gethostname()}


def _owner_alive(intent: Intent) -> bool:
    pid = intent.request.get("owner_pid")
    if intent.request.get("owner_host") != socket.gethostname() or not isinstance(pid, int):
        return False
    return pid == os.getpid() or pid_alive(pid)


def _in_flight(cloud: Cloud, intent: Intent) -> bool:
    young = cloud.clock.now() - intent.created_at < cloud.settings.vast.intent_grace
    return young and _owner_alive(intent)


async def _reap(cloud: Cloud, inst: Instance, intent: Intent | None, why: str) -> Action:
    tag = tracking_tag(inst.label) or ""
    try:
        await cloud.vast.destroy(inst.id)
    except VastError as exc:
        return Action("failed", inst.id, tag, f"could not destroy ({why}): {exc.message}")
    row = cloud.db.instances.by_vast_id(inst.id)
    if row is None:
        row, _ = cloud.db.instances.upsert_from_vast(inst)
    cloud.db.instances.mark_destroyed(row.id, reason=why, reaped=True)
    if intent is not None and intent.status in (IntentStatus.PENDING, IntentStatus.FAILED):
        cloud.db.intents.fail(intent.id, why, cleaned=True, vast_id=inst.id)
    return Action("reaped", inst.id, tag, why)


async def reconcile(cloud: Cloud) -> list[Action]:
    """One reconcile pass; returns what it did. Vast errors propagate (nothing is assumed)."""
    listed = await cloud.vast.list_instances()
    actions: list[Action] = []
    seen_ids = {inst.id for inst in listed}
    seen_tags: set[str] = set()
    for inst in listed:
        tag = tracking_tag(inst.label)
        if tag is None:
            continue  # not ours: never touched
        seen_tags.add(tag)
        intent = cloud.db.intents.by_label(tag)
        row = cloud.db.instances.by_vast_id(inst.id)
        if intent is None and row is None:
            actions.append(
                Action("foreign", inst.id, tag, "tagged by comfyfleet elsewhere; left alone")
            )
            continue
        if intent is not None and intent.status is IntentStatus.PENDING:
            if _in_flight(cloud, intent):
                continue
            actions.append(await _reap(cloud, inst, intent, "its create never completed"))
            continue
        if intent is not None and intent.status in (IntentStatus.FAILED, IntentStatus.CLEANED):
            actions.append(await _reap(cloud, inst, intent, "its create had failed"))
            continue
        was_bound = row is not None and row.live
        cloud.db.instances.upsert_from_vast(inst)
        if not was_bound:
            actions.append(Action("adopted", inst.id, tag, "tracked again"))
    for row in cloud.db.instances.live():
        if row.vast_id is not None and row.vast_id not in seen_ids:
            cloud.db.instances.mark_destroyed(row.id, reason="no longer listed by Vast")
            actions.append(Action("gone", row.vast_id, row.label, "no longer listed by Vast"))
    for intent in cloud.db.intents.pending():
        if intent.label in seen_tags or _in_flight(cloud, intent):
            continue
        cloud.db.intents.fail(intent.id, "the create never reached Vast", cleaned=True)
        row_id = _intent_row(cloud, intent)
        if row_id is not None:
            cloud.db.instances.mark_destroyed(row_id, reason="never created")
        actions.append(Action("abandoned", None, intent.label, "the create never reached Vast"))
    return actions


def _intent_row(cloud: Cloud, intent: Intent) -> int | None:
    for row in cloud.db.instances.live():
        if row.intent_id == intent.id:
            return row.id
    return None
