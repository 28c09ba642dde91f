"""Restoring workflows from the backup repository onto a ComfyUI server.

Each file is written through the userdata API exactly as the repository holds it at the chosen
revision, then read back and compared, byte for byte. Values that were scrubbed come back as
their placeholders (`<scrubbed:KIND:HASH>`): the result names every file that carries one, so
the user can fill the secrets in again. A file that exists on the server with other content is
left alone unless `overwrite` is given: a restore never silently replaces unsaved work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import Settings
from comfyfleet.errors import BackupError, ComfyNotFound, UsageError
from comfyfleet.services.backup import make_scrubber
from comfyfleet.services.backup_folders import INDEX_FILE, FolderIndex, Source
from comfyfleet.services.backup_pull import SETTINGS_FILE, WORKFLOWS_DIR, open_client, widget_names
from comfyfleet.services.backup_repo import BackupRepo
from comfyfleet.services.scrub import Scrubber, placeholders_in


@dataclass(frozen=True)
class RestoredFile:
    """One file of a restore. status: `written`; `unchanged` (the server had the same bytes);
    `filled` (the server holds the same workflow with its secrets in place of the backup's
    placeholders: kept, even with `overwrite`); `kept` (the server has other content and
    `overwrite` was not given)."""

    path: str
    status: str
    size: int
    placeholders: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "size": self.size,
            "placeholders": list(self.placeholders),
        }


@dataclass
class RestoreResult:
    target: str
    repo: Path
    folder: str
    commit: str
    files: list[RestoredFile] = field(default_factory=list)
    settings: str | None = None  # written | unchanged, when settings were asked for

    @property
    def with_placeholders(self) -> list[RestoredFile]:
        """Files the server now holds with placeholders instead of secrets."""
        return [f for f in self.files if f.placeholders and f.status in ("written", "unchanged")]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "repo": str(self.repo),
            "folder": self.folder,
            "commit": self.commit,
            "files": [f.to_json() for f in self.files],
            "settings": self.settings,
            "placeholders": [f.path for f in self.with_placeholders],
        }


@dataclass
class _Planned:
    folder: str
    commit: str
    files: dict[str, bytes]
    settings: bytes | None


def plan_restore(
    source: Source,
    repo_path: Path,
    *,
    rev: str | None,
    only: Sequence[str],
    from_folder: str | None,
    with_settings: bool,
) -> _Planned:
    """What the repository holds for the restore (checked before the server is touched)."""
    repo = BackupRepo.open(repo_path, create=False)
    if repo is None:
        raise UsageError(
            f"there is no backup repository at {repo_path}",
            hint="give it with --repo (or [backup] repo), or run comfyfleet backup first",
        )
    with repo:
        head = repo.head()
        commit = repo.resolve(rev)
        if commit is None or head is None:
            raise UsageError(f"the backup repository {repo_path} has no backups yet")
        index = FolderIndex.parse(repo.read_path(head, INDEX_FILE))
        folder = from_folder or index.folder_of(source)
        if folder is None:
            raise UsageError(
                f"the backup repository {repo_path} holds no backup of {source.display}",
                hint="name the folder to restore from with --from; "
                + (index.listing() or "it holds no backups yet"),
            )
        index.require(folder, str(repo_path))
        blobs = repo.files(commit, f"{folder}/{WORKFLOWS_DIR}")
        chosen = select(blobs, only, f"{folder} at {rev or 'HEAD'}")
        settings = repo.read_path(commit, f"{folder}/{SETTINGS_FILE}") if with_settings else None
        if with_settings and settings is None:
            raise UsageError(f"{folder} holds no settings at {rev or 'HEAD'}")
        files = {path: repo.read(blobs[path]) for path in chosen}
        return _Planned(folder, commit.decode(), files, settings)


def select(paths: dict[str, Any], only: Sequence[str], where: str) -> list[str]:
    """The paths `only` names (a path, with or without `.json`, or a unique file name)."""
    if not only:
        return sorted(paths)
    chosen: list[str] = []
    for name in only:
        wanted = name.strip().strip("/")
        exact = [p for p in paths if p in (wanted, f"{wanted}.json")]
        found = exact or [p for p in paths if p.rsplit("/", 1)[-1] in (wanted, f"{wanted}.json")]
        listing = ", ".join(sorted(paths)[:30]) or "none"
        if not found:
            raise UsageError(f"no workflow {name!r} in {where}", hint=f"its workflows: {listing}")
        if len(found) > 1:
            raise UsageError(
                f"{name!r} names {len(found)} workflows in {where}",
                hint="give the path: " + ", ".join(sorted(found)),
            )
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


async def restore(
    source: Source,
    repo_path: Path,
    settings: Settings,
    *,
    rev: str | None = None,
    only: Sequence[str] = (),
    from_folder: str | None = None,
    with_settings: bool = False,
    overwrite: bool = False,
) -> RestoreResult:
    """Write the folder's workflows (as the repository holds them at `rev`) to the server."""
    plan = plan_restore(
        source, repo_path, rev=rev, only=only, from_folder=from_folder, with_settings=with_settings
    )
    result = RestoreResult(source.display, repo_path, plan.folder, plan.commit)
    async with open_client(source.target, settings.comfy) as client:
        filled = _Filled(client, settings)
        for path, data in plan.files.items():
            remote = f"{WORKFLOWS_DIR}/{path}"
            status = await _put(client, remote, data, overwrite=overwrite, filled=filled)
            marks = tuple(dict.fromkeys(placeholders_in(data)))
            result.files.append(RestoredFile(path, status, len(data), marks))
        if plan.settings is not None:
            result.settings = await _put(
                client, SETTINGS_FILE, plan.settings, overwrite=True, filled=filled
            )
    return result


class _Filled:
    """Whether the server's file is the backed-up one with its secrets filled in: scrubbed
    the way a backup scrubs it, it gives the repository's bytes."""

    def __init__(self, client: ComfyClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._scrubber: Scrubber | None = None

    async def same(self, path: str, current: bytes, stored: bytes) -> bool:
        if not placeholders_in(stored):
            return False
        if self._scrubber is None:
            names = await widget_names(self._client, [])
            self._scrubber = make_scrubber(self._settings, names)
        return self._scrubber.scrub_files({path: current})[path].data == stored


async def _put(
    client: ComfyClient, path: str, data: bytes, *, overwrite: bool, filled: _Filled
) -> str:
    try:
        current: bytes | None = await client.userdata_read(path)
    except ComfyNotFound:
        current = None
    if current == data:
        return "unchanged"
    if current is not None and await filled.same(path, current, data):
        return "filled"
    if current is not None and not overwrite:
        return "kept"
    await client.userdata_write(path, data, overwrite=True)
    if await client.userdata_read(path) != data:
        raise BackupError(
            f"{path} on {client.base_url} does not read back as written",
            hint="something between us and ComfyUI changes uploads (a proxy?)",
        )
    return "written"
