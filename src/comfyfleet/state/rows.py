"""Typed rows the state database hands out: frozen dataclasses, never ORM objects.

Times are epoch seconds (floats) from the `Clock` the database was opened with, the unit
Vast itself uses. JSON snapshots (`offer`, `request`, `detail`) have been scrubbed of secrets
before they were written (see `scrub.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from comfyfleet.models.vast import InstanceStatus, Offer

MANUAL_POOL = "manual"  # the pool of instances rented by hand (`comfyfleet up`)


class IntentStatus(StrEnum):
    """Where a create intent stands.

    pending: recorded, the create may or may not have reached Vast.
    completed: Vast returned the new contract id (`vast_id`).
    failed: the create failed and a contract may still exist: reconcile must find it by label
        and destroy it; never retry a create while one of these is open.
    cleaned: the create failed and nothing is left billing (no contract, or it was destroyed).
    """

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    CLEANED = "cleaned"


class EventKind(StrEnum):
    """What an instance event records: an observed transition or an action taken."""

    CREATED = "created"  # the create returned a contract id
    STATUS = "status"  # an observed status change (or the first sighting)
    READY = "ready"  # ComfyUI answered through the instance's proxy
    STOPPED = "stopped"  # we asked Vast to stop it
    STARTED = "started"  # we asked Vast to start it
    DESTROYED = "destroyed"  # destroyed (by us or found gone)
    ADOPTED = "adopted"  # reconcile took over an instance whose intent completed
    REAPED = "reaped"  # reconcile destroyed an instance whose intent never completed
    RENAMED = "renamed"  # the user's name changed (the tracking label did not)
    ERROR = "error"  # something failed on or about this instance
    MODEL_PULLED = "model-pulled"  # a model file was downloaded to it (sha256 recorded)
    MODEL_REMOVED = "model-removed"  # a model file was deleted from it
    NODES = "nodes"  # a custom node pack was installed, updated, refused or removed


def parse_status(value: str | None) -> InstanceStatus:
    """A stored status; values from a newer version read as UNKNOWN instead of failing."""
    try:
        return InstanceStatus(value or "")
    except ValueError:
        return InstanceStatus.UNKNOWN


def parse_kind(value: str) -> EventKind | str:
    try:
        return EventKind(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class Intent:
    """A create intent, recorded before the create request is sent."""

    id: str  # uuid4 text; the uuid inside the tracking label
    label: str  # the tracking tag put into Vast's label
    pool: str
    offer_id: int | None
    request: Mapping[str, Any]  # what was asked for, scrubbed (no env values, no tokens)
    status: IntentStatus
    vast_id: int | None
    error: str | None
    created_at: float
    completed_at: float | None


@dataclass(frozen=True)
class InstanceRow:
    """One instance as the database knows it (the last observation plus our own marks)."""

    id: int  # local id
    vast_id: int | None  # None until the create returns (or reconcile binds it by label)
    label: str  # tracking tag `comfyfleet:<pool>:<uuid>`; a rename never changes it
    name: str | None  # the user's name, unique among live instances
    pool: str
    intent_id: str | None
    status: InstanceStatus
    actual_status: str | None
    intended_status: str | None
    status_msg: str | None
    offer: Offer | None
    image: str | None
    disk_gb: float | None
    gpu_name: str | None
    num_gpus: int | None
    machine_id: int | None
    dph_total: float | None  # $/h while running (storage included)
    storage_dph: float | None  # $/h of storage, billed in every state
    public_ip: str | None
    ssh_host: str | None
    ssh_port: int | None
    ports: Mapping[str, int] = field(default_factory=dict)  # "8188/tcp" -> host port
    comfy_port: int | None = None  # public port of ComfyUI's token proxy
    created_at: float = 0.0
    running_at: float | None = None  # when it last became running
    ready_at: float | None = None  # when ComfyUI last answered; cleared when it stops running
    stopped_at: float | None = None  # when it last stopped
    destroyed_at: float | None = None
    last_seen_at: float | None = None  # last time Vast listed it
    updated_at: float = 0.0
    last_processed_at: float | None = None  # lease columns for the reconcile loop
    lock_token: str | None = None
    lock_expires_at: float | None = None

    @property
    def live(self) -> bool:
        return self.destroyed_at is None

    @property
    def display_name(self) -> str:
        """The user's name, else the Vast id, else the local id."""
        if self.name:
            return self.name
        return str(self.vast_id) if self.vast_id is not None else f"#{self.id}"


@dataclass(frozen=True)
class InstanceEvent:
    """One transition or action in an instance's history."""

    id: int
    instance_id: int
    at: float
    kind: EventKind | str  # a plain str only for a kind written by a newer comfyfleet
    from_status: str | None
    to_status: str | None
    detail: Mapping[str, Any]


LABEL_PREFIX = "comfyfleet"


def tracking_label(pool: str, intent_id: str) -> str:
    """The tag comfyfleet puts into Vast's label: `comfyfleet:<pool>:<intent uuid>`."""
    return f"{LABEL_PREFIX}:{pool}:{intent_id}"


def tracking_tag(label: str | None) -> str | None:
    """The tracking tag inside a Vast label (`comfyfleet:<pool>:<uuid>[:<name>]`), or None."""
    parts = (label or "").split(":")
    if len(parts) >= 3 and parts[0] == LABEL_PREFIX and parts[1] and parts[2]:
        return ":".join(parts[:3])
    return None


def label_name(label: str | None) -> str | None:
    """The user's name carried after the tracking tag in a Vast label, if any."""
    parts = (label or "").split(":", 3)
    if tracking_tag(label) and len(parts) == 4 and parts[3]:
        return parts[3]
    return None


def vast_label(tag: str, name: str | None) -> str:
    """What goes into Vast's one label field: the tracking tag, then the user's name."""
    return f"{tag}:{name}" if name else tag


def label_pool(label: str | None) -> str | None:
    """The pool named in a tracking label, or None when `label` is not one of ours."""
    parts = (label or "").split(":")
    if len(parts) >= 3 and parts[0] == LABEL_PREFIX and parts[1]:
        return parts[1]
    return None
