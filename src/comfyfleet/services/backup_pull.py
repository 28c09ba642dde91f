"""Reading what a ComfyUI server holds for a backup: saved workflows and settings.

Workflows are the files under the user's `workflows` folder (nested folders included), listed
and read through the userdata API; settings come from `/settings` and are stored the way
ComfyUI itself writes `comfy.settings.json`. Files are read a few at a time; a file deleted
between the listing and the read is simply not there.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.comfy.workflow.ui_widgets import build_node_shape
from comfyfleet.config import ComfySettings
from comfyfleet.errors import ComfyError, ComfyNotFound, WorkflowError
from comfyfleet.models.comfy import UserdataEntry
from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.services.backup_repo import is_safe_path
from comfyfleet.services.scrub import WidgetNames
from comfyfleet.services.targets import Target

log = logging.getLogger(__name__)

WORKFLOWS_DIR = "workflows"
SETTINGS_FILE = "comfy.settings.json"
_READS_AT_ONCE = 8


@dataclass
class Snapshot:
    """What one server holds: workflow bytes by path (relative to `workflows/`), settings."""

    entries: dict[str, UserdataEntry] = field(default_factory=dict)
    workflows: dict[str, bytes] = field(default_factory=dict)
    settings: bytes | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    widget_names: WidgetNames | None = None
    warnings: list[str] = field(default_factory=list)


def open_client(target: Target, comfy: ComfySettings) -> ComfyClient:
    return ComfyClient(target.url, token=target.token, settings=comfy)


async def list_workflows(client: ComfyClient) -> tuple[list[UserdataEntry], list[tuple[str, str]]]:
    """The workflow files of the server (safe paths only) and the ones skipped, with why."""
    entries, skipped = [], []
    for entry in await client.userdata_list_full(WORKFLOWS_DIR):
        if is_safe_path(entry.path):
            entries.append(entry)
        else:
            skipped.append((entry.path, "a path that cannot be stored safely"))
    return sorted(entries, key=lambda e: e.path), skipped


async def pull(client: ComfyClient, *, with_settings: bool = True, names: bool = True) -> Snapshot:
    """Every workflow (and the settings) of the server behind `client`."""
    snap = Snapshot()
    listed, snap.skipped = await list_workflows(client)
    gate = asyncio.Semaphore(_READS_AT_ONCE)

    async def read(entry: UserdataEntry) -> tuple[UserdataEntry, bytes | None]:
        async with gate:
            try:
                return entry, await client.userdata_read(f"{WORKFLOWS_DIR}/{entry.path}")
            except ComfyNotFound:
                return entry, None  # deleted since it was listed

    for entry, data in await asyncio.gather(*(read(e) for e in listed)):
        if data is not None:
            snap.entries[entry.path] = entry
            snap.workflows[entry.path] = data
    if with_settings:
        settings = await client.settings()
        snap.settings = json.dumps(settings, indent=4).encode("utf-8")
    if names and snap.workflows:
        snap.widget_names = await widget_names(client, snap.warnings)
    return snap


async def widget_names(client: ComfyClient, warnings: list[str]) -> WidgetNames | None:
    """Names of the positional widget values of each node type, from the server's nodes."""
    try:
        catalog = await client.object_info()
    except ComfyError as exc:
        warnings.append(
            f"node definitions unavailable ({exc.message}): secrets in unnamed widget values "
            "were found by their shape only"
        )
        return None
    return _names_from(catalog)


def _names_from(catalog: NodeCatalog) -> WidgetNames:
    cache: dict[str, Sequence[str] | None] = {}

    def names(class_type: str) -> Sequence[str] | None:
        if class_type not in cache:
            cache[class_type] = None
            if class_type in catalog:
                try:
                    shape = build_node_shape(catalog[class_type])
                    cache[class_type] = [w.name for w in shape.widgets if w.in_workflow]
                except (WorkflowError, LookupError, TypeError, ValueError, AttributeError) as exc:
                    log.debug("no widget names for %s: %s", class_type, exc)
        return cache[class_type]

    return names
