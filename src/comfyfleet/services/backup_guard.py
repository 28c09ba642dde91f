"""The backup `stop` and `destroy` run first.

Before an instance is stopped or destroyed, its workflows are compared with the repository
(content hashes after scrubbing); when it holds any that the repository lacks, it is backed up.
The whole step has a short deadline (`[backup] timeout`, with request timeouts to match), so an
offline instance or a hung ComfyUI costs seconds, not minutes. It never raises: the caller gets
an outcome and decides (the CLI asks, or with `destroy --yes` goes on: a leaked instance costs
more than a lost backup).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyfleet.config import ComfySettings, Settings
from comfyfleet.errors import ComfyfleetError
from comfyfleet.models.vast import InstanceStatus
from comfyfleet.services.backup import (
    BackupResult,
    commit_snapshot,
    compare,
    default_repo,
    row_source,
)
from comfyfleet.services.backup_folders import Source
from comfyfleet.services.backup_pull import open_client, pull
from comfyfleet.services.cloud import Cloud
from comfyfleet.state.rows import InstanceRow
from comfyfleet.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

#: Longest wait for a connection while backing up before stop/destroy (seconds).
CONNECT_TIMEOUT = 5.0


@dataclass
class GuardOutcome:
    """What the backup before stop/destroy did.

    state: `skipped` (nothing to back up, or turned off), `up-to-date` (every workflow is in
    the repository), `backed-up` (a backup ran; `result` tells what it committed), `failed`
    (it could not run: `message` says why; the caller decides whether to go on).
    """

    state: str
    message: str
    result: BackupResult | None = None

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "message": self.message,
            "result": None if self.result is None else self.result.to_json(),
        }


def quick_comfy(settings: Settings) -> ComfySettings:
    """ComfyUI settings whose timeouts fit inside the backup deadline."""
    budget = settings.backup.timeout
    return settings.comfy.model_copy(
        update={
            "request_timeout": min(settings.comfy.request_timeout, budget),
            "connect_timeout": min(settings.comfy.connect_timeout, CONNECT_TIMEOUT, budget),
        }
    )


async def backup_source_if_needed(
    source: Source, repo: Path, settings: Settings, clock: Clock
) -> GuardOutcome:
    """Back `source` up if it holds workflows the repository lacks (no deadline here)."""
    async with open_client(source.target, quick_comfy(settings)) as client:
        snapshot = await pull(client)
    if not snapshot.workflows:
        return GuardOutcome("skipped", f"{source.display} holds no saved workflows")
    holdings = compare(source, snapshot, repo, settings)
    if not holdings.pending:
        count = len(holdings.workflows)
        return GuardOutcome("up-to-date", f"all {count} workflow(s) are already in {repo}")
    result = commit_snapshot(source, snapshot, repo, settings, clock.now())
    pending = len(holdings.pending)
    return GuardOutcome("backed-up", f"backed up {pending} workflow(s) to {repo}", result)


async def backup_before(
    cloud: Cloud, row: InstanceRow, *, repo: Path | None = None
) -> GuardOutcome:
    """Back the instance up if needed before it is stopped or destroyed; never raises."""
    settings = cloud.settings
    if not settings.backup.auto:
        return GuardOutcome("skipped", "backups before stop/destroy are off ([backup] auto)")
    if row.running_at is None and row.ready_at is None:
        return GuardOutcome("skipped", "it never ran: it holds no saved workflows")
    name = row.display_name
    try:
        source = row_source(cloud, row)
    except ComfyfleetError as exc:
        return GuardOutcome("failed", f"cannot back up {name}: {exc.message}")
    if row.status is not InstanceStatus.RUNNING or source is None:
        return GuardOutcome(
            "failed",
            f"cannot back up {name}: it is {row.status.value}, so its ComfyUI cannot be reached",
        )
    # commits carry the real time, even in the sandbox (whose clock may run faster)
    return await guarded(source, repo or default_repo(settings), settings, SystemClock())


async def guarded(source: Source, repo: Path, settings: Settings, clock: Clock) -> GuardOutcome:
    """`backup_source_if_needed` within `[backup] timeout`; every failure is an outcome."""
    budget = settings.backup.timeout
    name = source.display
    try:
        async with asyncio.timeout(budget):
            return await backup_source_if_needed(source, repo, settings, clock)
    except TimeoutError:
        return GuardOutcome("failed", f"cannot back up {name}: no answer within {budget:g} s")
    except ComfyfleetError as exc:
        return GuardOutcome("failed", f"cannot back up {name}: {exc.message}")
    # a failed backup must never block a destroy, whatever went wrong
    except Exception as exc:
        log.exception("backup of %s before stop/destroy failed", name)
        return GuardOutcome("failed", f"cannot back up {name}: {type(exc).__name__}: {exc}")
