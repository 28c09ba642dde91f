"""Model files on an instance: pull, list, remove (`comfyfleet models pull|ls|rm`).

    planned = await plan_pull(cloud.settings, "hf://owner/repo/x.safetensors", folder="loras")
    result = await pull(cloud, "studio", planned.source, on_progress=show)
    files = await list_models(cloud, "studio")
    removed = await remove_model(cloud, "studio", "loras/x.safetensors")

Downloads run on the instance (curl; nothing passes through this machine), see
`models_pull`. Each pull and removal is recorded as an instance event (sha256, size, source
with credentials masked). `prepare` and `env apply` reuse `pull_on`, `list_on` and
`remove_on` on a session they already hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfyfleet.catalog import ModelSource, check_filename
from comfyfleet.errors import ComfyfleetError, UsageError
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.modelfiles import PART_SUFFIX, Removed, record_holds
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.models_pull import (
    Progress,
    PullProgress,
    PullResult,
    model_files,
    pull_on,
)
from comfyfleet.services.models_source import (
    DIR_FOLDERS,
    MODEL_FOLDERS,
    PlannedPull,
    Tokens,
    auth_headers,
    check_folder,
    download_tokens,
    model_dirs,
    plan_pull,
)
from comfyfleet.services.remote_ops import open_session
from comfyfleet.state import EventKind
from comfyfleet.util.redact import redact

__all__ = [
    "ModelFile",
    "PlannedPull",
    "PullProgress",
    "PullResult",
    "Removed",
    "list_models",
    "list_on",
    "plan_pull",
    "pull",
    "pull_on",
    "remove_model",
    "remove_on",
]


async def pull(
    cloud: Cloud,
    ref: str,
    source: ModelSource | PlannedPull,
    *,
    directory: str | None = None,
    on_progress: Progress | None = None,
    tokens: Tokens | None = None,
) -> PullResult:
    """Pull `source` onto instance `ref` (see `models_pull.pull_on`) and record the event.

    A PlannedPull brings its folder under models/ (`directory` default); `tokens` default to
    `download_tokens(cloud.settings)`."""
    if isinstance(source, PlannedPull):
        directory = directory or source.directory
        source = source.source
    tokens = tokens if tokens is not None else download_tokens(cloud.settings)
    auth_headers(source, tokens)  # a missing token is reported before connecting
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        try:
            result = await pull_on(
                session.conn,
                layout,
                source,
                tokens=tokens,
                settings=cloud.settings.downloads,
                clock=cloud.clock,
                on_progress=on_progress,
                directory=directory,
            )
        except ComfyfleetError as exc:
            detail = {"action": "models pull", "path": source.filename, "error": exc.message}
            cloud.db.instances.record_event(session.row.id, EventKind.ERROR, detail=detail)
            raise
    if result.status == "downloaded":
        cloud.db.instances.record_event(
            session.row.id, EventKind.MODEL_PULLED, detail=result.to_json()
        )
    return result


@dataclass(frozen=True)
class ModelFile:
    """One file in a model folder of an instance, with what the index recorded about it."""

    folder: str  # ComfyUI's folder key
    directory: str  # the folder under models/ holding it ("clip" for a text encoder there)
    name: str  # relative to that folder
    size: int
    sha256: str | None = None
    source: str | None = None
    partial: bool = False  # a `.part` an interrupted pull left

    @property
    def path(self) -> str:
        return f"{self.directory}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "path": self.path,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "source": self.source,
            "partial": self.partial,
        }


async def list_on(
    conn: SshConnection, layout: InstanceLayout, folder: str | None = None
) -> list[ModelFile]:
    """Every file in the model folders (or in `folder` only), ComfyUI's search order."""
    keys = [check_folder(folder)] if folder else list(MODEL_FOLDERS)
    dirs = [d for k in keys for d in model_dirs(k)]
    listing = await model_files(conn, layout).listing(dirs)
    out: list[ModelFile] = []
    for directory in dirs:
        for name, size, mtime in listing.folders.get(directory, ()):
            rel = f"{directory}/{name}"
            partial = name.endswith(PART_SUFFIX)
            entry = listing.index.get(rel) if not partial else None
            if not record_holds(entry, size, mtime):
                entry = None  # replaced or rewritten since it was recorded: unknown again
            out.append(
                ModelFile(
                    DIR_FOLDERS[directory],
                    directory,
                    name,
                    size,
                    str(entry["sha256"]) if entry and entry.get("sha256") else None,
                    redact(str(entry["source"])) if entry and entry.get("source") else None,
                    partial,
                )
            )
    return out


async def list_models(cloud: Cloud, ref: str, folder: str | None = None) -> list[ModelFile]:
    async with open_session(cloud, ref) as session:
        return await list_on(session.conn, await session.layout(cloud), folder)


def removal_candidates(path: str) -> list[str]:
    """Paths under models/ that `FOLDER/NAME` may mean, first match wins: the path itself
    when FOLDER is a folder under models/, then NAME in the other folders ComfyUI lists for
    the same key (`text_encoders/x` may be in models/clip). Checked to stay inside models/."""
    text = check_filename(path.strip())
    head, _, rest = text.partition("/")
    if not rest:
        raise UsageError(
            f"{path!r} names no file in a model folder",
            hint="write FOLDER/NAME, e.g. loras/detail.safetensors (see comfyfleet models ls)",
        )
    try:
        key = check_folder(head)
    except UsageError as exc:
        raise UsageError(f"{path!r}: {exc.message}", hint=exc.hint) from exc
    others = [f"{d}/{rest}" for d in model_dirs(key)]
    return list(dict.fromkeys([text, *others] if head in DIR_FOLDERS else others))


async def remove_on(conn: SshConnection, layout: InstanceLayout, path: str) -> Removed:
    """Delete the model file `path` (and a `.part` of it, and its index record)."""
    candidates = removal_candidates(path)
    removed = await model_files(conn, layout).remove(candidates)
    if removed is None:
        raise UsageError(
            f"no model file {path} on {conn.target.describe()}",
            hint="see what is there with comfyfleet models ls ID",
        )
    return removed


async def remove_model(cloud: Cloud, ref: str, path: str) -> Removed:
    """Delete a model file from instance `ref` and record the event."""
    removal_candidates(path)  # bad input fails before connecting
    async with open_session(cloud, ref) as session:
        removed = await remove_on(session.conn, await session.layout(cloud), path)
    entry = removed.entry or {}
    cloud.db.instances.record_event(
        session.row.id,
        EventKind.MODEL_REMOVED,
        detail={"path": removed.path, "size": removed.size, "sha256": entry.get("sha256")},
    )
    return removed
