"""Workflow backup to git: back up an instance (or any ComfyUI server), every running instance,
and compare what an instance holds with the repository.

A backup reads the server's saved workflows and settings (`backup_pull`), scrubs secrets out of
them (`scrub`), and makes the source's folder of the repository (`backup_folders`) hold exactly
that: new and changed files are written, files deleted on the server are deleted from the
folder. A commit is made only when the folder changed; its message names the source and the
time (UTC) and lists every scrubbed value (file, JSON path, kind; never the value) as trailers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from comfyfleet.config import ComfySettings, Settings
from comfyfleet.errors import ComfyfleetError
from comfyfleet.models.vast import InstanceStatus
from comfyfleet.services.backup_folders import (
    INDEX_FILE,
    FolderIndex,
    Source,
    instance_source,
    url_source,
)
from comfyfleet.services.backup_pull import (
    SETTINGS_FILE,
    WORKFLOWS_DIR,
    Snapshot,
    open_client,
    pull,
)
from comfyfleet.services.backup_repo import BackupRepo, ObjectID, blob_id
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.instances import list_instances
from comfyfleet.services.scrub import Finding, Scrubbed, Scrubber, WidgetNames
from comfyfleet.services.secrets import web_token
from comfyfleet.services.targets import CloudOpener, Target, is_url, resolve_target, url_target
from comfyfleet.state.rows import InstanceRow
from comfyfleet.util.clock import Clock, SystemClock

DEFAULT_REPO_DIR = "workflow-backup"


def default_repo(settings: Settings) -> Path:
    """`[backup] repo`, else `<data dir>/workflow-backup`."""
    return (settings.backup.repo or settings.data_dir() / DEFAULT_REPO_DIR).expanduser()


def make_scrubber(settings: Settings, widget_names: WidgetNames | None) -> Scrubber:
    # Placeholder hashes are keyed by a key derived from the local secret (the one instance
    # tokens come from), so a placeholder cannot be used to guess a weak password offline.
    key = web_token(settings.config_dir(), "comfyfleet:backup-scrub").encode()
    return Scrubber(
        key,
        names=settings.backup.scrub_names,
        patterns=settings.backup.scrub_patterns,
        widget_names=widget_names,
    )


def scrub_snapshot(snapshot: Snapshot, settings: Settings) -> dict[str, Scrubbed]:
    """The snapshot's files as the folder will hold them (`workflows/...`, settings)."""
    files = {f"{WORKFLOWS_DIR}/{p}": data for p, data in snapshot.workflows.items()}
    if snapshot.settings is not None:
        files[SETTINGS_FILE] = snapshot.settings
    return make_scrubber(settings, snapshot.widget_names).scrub_files(files)


@dataclass
class BackupResult:
    """One source backed up: the commit (None: nothing changed) and what changed."""

    source: str
    folder: str
    repo: Path
    commit: str | None
    workflows: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "folder": self.folder,
            "repo": str(self.repo),
            "commit": self.commit,
            "workflows": self.workflows,
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "scrubbed": [f.to_json() for f in self.findings],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "warnings": self.warnings,
        }


def commit_snapshot(
    source: Source, snapshot: Snapshot, repo_path: Path, settings: Settings, now: float
) -> BackupResult:
    """Scrub `snapshot` and make the source's folder hold it; commit if anything changed."""
    scrubbed = scrub_snapshot(snapshot, settings)
    files = {path: s.data for path, s in scrubbed.items()}
    findings = [f for s in scrubbed.values() for f in s.findings]
    repo = BackupRepo.open(repo_path, create=True)
    assert repo is not None
    with repo:
        head = repo.head()
        index = FolderIndex.parse(repo.read_path(head, INDEX_FILE))
        folder = index.assign(source)
        before = repo.files(head, folder)
        result = BackupResult(
            source.display,
            folder,
            repo_path,
            None,
            len(snapshot.workflows),
            added=sorted(p for p in files if p not in before),
            changed=sorted(p for p in files if p in before and before[p] != blob_id(files[p])),
            deleted=sorted(p for p in before if p not in files),
            findings=findings,
            skipped=list(snapshot.skipped),
            warnings=list(snapshot.warnings),
        )

        def root_files(base: ObjectID | None) -> Mapping[str, bytes]:
            current = FolderIndex.parse(repo.read_path(base, INDEX_FILE))
            current.folders[folder] = dict(source.record)
            return {INDEX_FILE: current.to_bytes()}

        message = commit_message(source, result, now)
        committed = repo.commit_folder(folder, files, root_files, message=message, when=now)
    if committed is not None:
        result.commit = committed.id
        if committed.worktree_error:
            result.warnings.append(committed.worktree_error)
    else:
        result.added, result.changed, result.deleted = [], [], []
    return result


def commit_message(source: Source, result: BackupResult, now: float) -> str:
    when = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"backup {_oneline(source.display)} at {when}", ""]
    parts = [
        f"{len(getattr(result, kind))} {kind}"
        for kind in ("added", "changed", "deleted")
        if getattr(result, kind)
    ]
    lines.append(f"{result.workflows} workflow file(s); " + (", ".join(parts) or "index updated"))
    for kind in ("added", "changed", "deleted"):
        lines += [f"  {kind}: {_oneline(p)}" for p in getattr(result, kind)]
    trailers = [f"Backup-Folder: {result.folder}"]
    trailers += [f"Scrubbed: {_oneline(f.describe())}" for f in result.findings]
    return "\n".join([*lines, "", *trailers]) + "\n"


def _oneline(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


# --- sources --------------------------------------------------------------------------------


async def resolve_source(
    ref: str, settings: Settings, *, token: str | None, open_cloud: CloudOpener | None
) -> Source:
    """A URL, or an instance id or name (looked up and refreshed on the profile's cloud)."""
    if is_url(ref) or open_cloud is None:
        return url_source(url_target(ref, settings, token=token))
    async with open_cloud() as cloud:
        target = await resolve_target(
            ref, settings, token=token, open_cloud=lambda: contextlib.nullcontext(cloud)
        )
        return instance_source(cloud.db.instances.find(ref), target, cloud.config.profile)


def row_source(cloud: Cloud, row: InstanceRow) -> Source | None:
    """The source of a tracked instance, None while it has no ComfyUI endpoint."""
    endpoint = comfy_endpoint(cloud, row)
    if endpoint is None:
        return None
    target = Target(endpoint.url, endpoint.token, name=row.display_name)
    return instance_source(row, target, cloud.config.profile)


async def backup_source(
    source: Source,
    repo_path: Path,
    settings: Settings,
    *,
    clock: Clock | None = None,
    comfy: ComfySettings | None = None,
) -> BackupResult:
    """Back up one server's workflows and settings into `repo_path`."""
    async with open_client(source.target, comfy or settings.comfy) as client:
        snapshot = await pull(client)
    return commit_snapshot(source, snapshot, repo_path, settings, (clock or SystemClock()).now())


@dataclass
class SourceOutcome:
    """`backup --all`: one instance's result, or why it could not be backed up."""

    source: str
    result: BackupResult | None = None
    error: ComfyfleetError | None = None


async def backup_all(cloud: Cloud, repo_path: Path) -> list[SourceOutcome]:
    """Back up every running instance of the profile; one failing never stops the others."""
    views, _actions = await list_instances(cloud)
    rows = [v.row for v in views if v.row.status is InstanceStatus.RUNNING]

    async def one(row: InstanceRow) -> SourceOutcome:
        source = row_source(cloud, row)
        if source is None:
            return SourceOutcome(row.display_name, error=_no_endpoint(row))
        try:
            result = await backup_source(source, repo_path, cloud.settings)
        except ComfyfleetError as exc:
            return SourceOutcome(source.display, error=exc)
        return SourceOutcome(source.display, result=result)

    return list(await asyncio.gather(*(one(r) for r in rows)))


def _no_endpoint(row: InstanceRow) -> ComfyfleetError:
    return ComfyfleetError(
        f"instance {row.display_name} has no ComfyUI endpoint yet (status {row.status.value})",
        hint="wait until it is running, then back it up",
    )


# --- what an instance holds, compared with the repository ------------------------------------


@dataclass(frozen=True)
class HeldWorkflow:
    """A workflow on the server and how the repository holds it (after scrubbing).

    status: `backed-up` (same content at the same path of the source's folder), `copy` (the
    same content elsewhere in the repository), `changed` (the folder holds another version),
    `new` (not in the repository).
    """

    path: str
    size: int
    modified: float | None
    status: str
    elsewhere: str | None = None

    @property
    def backed_up(self) -> bool:
        return self.status in ("backed-up", "copy")

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "modified": self.modified,
            "backed_up": self.backed_up,
            "status": self.status,
            "elsewhere": self.elsewhere,
        }


@dataclass
class Holdings:
    source: str
    repo: Path
    repo_exists: bool
    folder: str | None
    workflows: list[HeldWorkflow]
    skipped: list[tuple[str, str]]

    @property
    def pending(self) -> list[HeldWorkflow]:
        return [w for w in self.workflows if not w.backed_up]


def compare(source: Source, snapshot: Snapshot, repo_path: Path, settings: Settings) -> Holdings:
    scrubbed = scrub_snapshot(snapshot, settings)
    repo = BackupRepo.open(repo_path, create=False)
    folder: str | None = None
    in_folder: dict[str, ObjectID] = {}
    anywhere: dict[ObjectID, str] = {}
    if repo is not None:
        with repo:
            head = repo.head()
            folder = FolderIndex.parse(repo.read_path(head, INDEX_FILE)).folder_of(source)
            if folder is not None:
                in_folder = repo.files(head, f"{folder}/{WORKFLOWS_DIR}")
            for path, blob in repo.files(head).items():
                anywhere.setdefault(blob, path)
    held = []
    for path, entry in snapshot.entries.items():
        blob = blob_id(scrubbed[f"{WORKFLOWS_DIR}/{path}"].data)
        if in_folder.get(path) == blob:
            status, elsewhere = "backed-up", None
        elif blob in anywhere:
            status, elsewhere = "copy", anywhere[blob]
        else:
            status, elsewhere = ("changed" if path in in_folder else "new"), None
        held.append(HeldWorkflow(path, entry.size, entry.modified, status, elsewhere))
    return Holdings(
        source.display, repo_path, repo is not None, folder, held, list(snapshot.skipped)
    )


async def held_workflows(
    source: Source, repo_path: Path, settings: Settings, *, comfy: ComfySettings | None = None
) -> Holdings:
    """What the server holds, and whether each workflow is in the repository."""
    async with open_client(source.target, comfy or settings.comfy) as client:
        snapshot = await pull(client, with_settings=False)
    return compare(source, snapshot, repo_path, settings)
