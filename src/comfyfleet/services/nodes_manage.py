"""What custom_nodes holds on an instance (`nodes ls`), removing a pack (`nodes rm`) and
updating one (`nodes update`: `nodes install --ref` on the entry's own repository).

A listing reads the folder in one SSH round trip (`remote.custom_nodes`), the latest
import-times block of ComfyUI's log, and /object_info for the classes each pack added;
what cannot be read (ComfyUI down, no log) is shown as unknown, never guessed.

Removal takes the name `nodes ls` shows (a folder, a `.py` file, a `.disabled` entry), the
folder name without `.py`, a git URL, or a catalog id whose repository is installed. The
entry must be a direct child of custom_nodes; a symlink is removed itself, not its target.
ComfyUI is then restarted and the pack's classes must be gone. Its pip requirements stay:
other packs may share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from comfyfleet.errors import ComfyfleetError, NodePackError, UsageError
from comfyfleet.remote.comfylog import StartupReport
from comfyfleet.remote.custom_nodes import Entry, list_entries, remove_entry
from comfyfleet.remote.git import check_entry_name, repo_dir_name
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.nodes import (
    InstallResult,
    custom_nodes_dir,
    install_pack,
    node_classes,
    record,
)
from comfyfleet.services.nodes_source import check_pack_ref, looks_like_url, resolve_source
from comfyfleet.services.nodes_verify import Modules, classes_by_module, restart, startup_report
from comfyfleet.services.remote_ops import Session, changing, open_session
from comfyfleet.util.lines import Line, quiet

#: What `nodes update` checks out by default: the origin's default branch, freshly fetched.
DEFAULT_BRANCH = "origin/HEAD"

REQUIREMENTS_NOTE = "its pip requirements stay installed (other packs may use them)"


@dataclass(frozen=True)
class PackStatus:
    """One entry of custom_nodes and what ComfyUI made of it at its latest start."""

    entry: Entry
    imported: bool | None  # None: not in the latest report (disabled, added since, no log)
    import_line: str | None
    classes: int | None  # None: /object_info could not be read

    def to_json(self) -> dict[str, Any]:
        return {
            **self.entry.to_json(),
            "imported": self.imported,
            "import_line": self.import_line,
            "classes": self.classes,
        }


@dataclass(frozen=True)
class Listing:
    instance: str
    folder: str
    packs: tuple[PackStatus, ...]
    comfy_answered: bool
    log_read: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "folder": self.folder,
            "comfy_answered": self.comfy_answered,
            "log_read": self.log_read,
            "packs": [p.to_json() for p in self.packs],
        }


def _status(entry: Entry, report: StartupReport | None, modules: Modules | None) -> PackStatus:
    line = report.find(entry.name) if report is not None and entry.loadable else None
    count = len(modules.get(entry.module, ())) if modules is not None else None
    if modules is not None and not entry.loadable:
        count = 0
    imported = (not line.failed) if line is not None else (True if count else None)
    return PackStatus(entry, imported, line.text if line else None, count)


async def list_packs(cloud: Cloud, ref: str) -> Listing:
    """Every entry of the instance's custom_nodes with its git state and import state."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        folder = custom_nodes_dir(layout)
        entries = await list_entries(session.conn, folder) or []
        report = await startup_report(cloud, session, layout)
        modules = await classes_by_module(cloud, session)
        packs = tuple(_status(e, report, modules) for e in entries)
        return Listing(
            session.row.display_name, str(folder), packs, modules is not None, report is not None
        )


@dataclass(frozen=True)
class Removed:
    instance: str
    pack: str
    url: str | None
    commit: str | None
    classes: tuple[str, ...]  # the classes it had, now gone
    restarted: bool
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "pack": self.pack,
            "url": self.url,
            "commit": self.commit,
            "classes": list(self.classes),
            "restarted": self.restarted,
            "notes": list(self.notes),
        }


async def _match(cloud: Cloud, entries: list[Entry], pack: str) -> Entry | None:
    """The entry `pack` names (see the module docstring), or None."""
    by_name = {e.name: e for e in entries}
    if looks_like_url(pack):
        return by_name.get(repo_dir_name(pack))
    try:
        name = check_entry_name(pack)
    except ComfyfleetError:
        name = None
    if name is not None:
        for candidate in (name, f"{name}.py"):
            if candidate in by_name:
                return by_name[candidate]
        folded = [e for e in entries if e.name.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
    check_pack_ref(pack)
    try:
        src = await resolve_source(cloud.settings, pack)
    except UsageError:
        return None
    return next((e for e in entries if src.same_repo(e.url)), by_name.get(src.name))


async def _installed(cloud: Cloud, session: Session, folder: PurePosixPath, pack: str) -> Entry:
    """The custom_nodes entry `pack` names on the instance; UsageError listing them if none."""
    entries = await list_entries(session.conn, folder) or []
    entry = await _match(cloud, entries, pack)
    if entry is None:
        names = ", ".join(e.name for e in entries) or "none"
        raise UsageError(
            f"instance {session.row.display_name} has no custom node pack {pack!r} "
            f"(custom_nodes holds: {names})",
            hint=f"comfyfleet nodes ls {session.row.vast_id}",
        )
    return entry


async def update_pack(
    cloud: Cloud, ref: str, pack: str, *, git_ref: str | None = None, on_line: Line = quiet
) -> InstallResult:
    """Bring installed pack `pack` to `git_ref`, by default to its origin's default branch as
    it is now: fetched, checked out, requirements through the torch guard, restart, verify
    (all as `nodes install --ref`; put back as it was when refused)."""
    if not looks_like_url(pack):
        check_pack_ref(pack)
    async with open_session(cloud, ref) as session:
        folder = custom_nodes_dir(await session.layout(cloud))
        entry = await _installed(cloud, session, folder, pack)
        where = f"custom_nodes/{entry.name} on instance {session.row.display_name}"
    if entry.url is None or entry.commit is None:
        raise UsageError(
            f"{where} is no git checkout: it cannot be updated",
            hint="remove it (comfyfleet nodes rm) and install the pack again",
        )
    if entry.name != repo_dir_name(entry.url):
        raise UsageError(
            f"{where} is not named after its repository {entry.url} (disabled or renamed)",
            hint="enable it under its repository's name first, or remove and install it again",
        )
    return await install_pack(
        cloud, ref, entry.url, git_ref=git_ref or DEFAULT_BRANCH, on_line=on_line
    )


async def remove_pack(cloud: Cloud, ref: str, pack: str, *, on_line: Line = quiet) -> Removed:
    """Remove pack `pack` from the instance's custom_nodes, restart, check its classes left."""
    if not looks_like_url(pack):
        check_pack_ref(pack)
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        folder = custom_nodes_dir(layout)
        async with changing(
            cloud.settings.remote, session.conn, layout, f"nodes rm {pack}", on_line
        ):
            entry = await _installed(cloud, session, folder, pack)
            before = await classes_by_module(cloud, session)
            had = tuple(sorted(before.get(entry.module, ()))) if before is not None else ()
            on_line(f"removing {folder / entry.name}")
            await remove_entry(session.conn, folder, entry.name)
            event = {
                "action": "remove",
                "pack": entry.name,
                "url": entry.url,
                "commit": entry.commit,
                "classes": len(had),
            }
            record(cloud, session, event)
            notes = [REQUIREMENTS_NOTE]

            def removed(restarted: bool) -> Removed:
                return Removed(
                    session.row.display_name,
                    entry.name,
                    entry.url,
                    entry.commit,
                    had,
                    restarted,
                    tuple(notes),
                )

            if not entry.loadable:
                notes.append("ComfyUI never loaded it, so it was not restarted")
                return removed(False)
            await restart(cloud, session, layout, on_line=on_line, why=f"removed {entry.name}")
            after = await classes_by_module(cloud, session)
            left = sorted(after.get(entry.module, ())) if after is not None else []
            if left:
                raise NodePackError(
                    f"{entry.name} was removed, but ComfyUI still has its classes: "
                    + ", ".join(left),
                    hint="another custom_nodes entry may carry the same module name; "
                    f"see comfyfleet nodes ls {session.row.vast_id}",
                )
            on_line(f"{entry.name} removed; {node_classes(len(had))} gone")
            return removed(True)
