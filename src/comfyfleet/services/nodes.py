"""Custom node packs on an instance: install (torch-safe), list, remove.

    result = await install_pack(cloud, "studio", "https://github.com/o/pack", git_ref="v1.2")
    listing = await list_packs(cloud, "studio")          # nodes_manage
    removed = await remove_pack(cloud, "studio", "pack")  # nodes_manage

Install, over one SSH session (`remote_ops.open_session`, the layout detected there):

1. SOURCE -> repository URL and folder name (`nodes_source`), validated before any contact.
2. A new pack is cloned into a staging folder beside custom_nodes
   (`<ComfyUI>/.comfyfleet-staging/<name>`), checked out at `--ref` (tag, branch or commit),
   its submodules updated, its commit recorded; its requirements.txt goes through the torch
   guard (`torch_guard`) from there. Only then is it moved into custom_nodes, so a refusal,
   a failure or a lost connection never leaves a half-installed pack where ComfyUI loads it.
   An installed pack is left alone ("already installed at <commit>"), or with a different
   `--ref` fetched and checked out in place (the old commit restored if its requirements
   are refused). `install.py` is never run.
3. ComfyUI is restarted and the pack verified (`nodes_verify`): its classes appear in
   /object_info; when they do not, its IMPORT FAILED line and traceback are raised in a
   `PackImportFailed` (the pack stays, for inspection; the error says how to remove it).
   With `restart=False` this step is left to the caller, who installs several packs and
   restarts ComfyUI once (`prepare`, `env apply`): the result then has no classes yet.

Every outcome is recorded as a `nodes` event of the instance, so `comfyfleet show` tells it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from comfyfleet.control.protected import ProtectedSet
from comfyfleet.errors import (
    ComfyfleetError,
    NodePackError,
    PackImportFailed,
    ProtectedChangeRefused,
    ProtectedRolledBack,
    RemoteError,
    UsageError,
)
from comfyfleet.remote import git
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.custom_nodes import Entry, list_entries, move_in, remove_tree
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.nodes_source import PackSource, resolve_source
from comfyfleet.services.nodes_verify import Loaded, loaded, restart
from comfyfleet.services.remote_ops import Session, changing, open_session
from comfyfleet.services.torch_guard import GuardResult, TorchGuard
from comfyfleet.state import EventKind
from comfyfleet.util.lines import Line, quiet

Status = Literal["installed", "updated", "already-installed"]
STAGING = ".comfyfleet-staging"
INSTALL_PY_NOTE = "install.py was not run (comfyfleet never runs a pack's install script)"
RESTART_DEFERRED_NOTE = "ComfyUI was not restarted: it loads the pack at its next restart"


@dataclass(frozen=True)
class InstallResult:
    """A pack installed (or found installed) on an instance and what ComfyUI made of it."""

    instance: str
    pack: str  # its custom_nodes folder
    url: str
    commit: str
    status: Status
    previous_commit: str | None = None
    requirements: tuple[str, ...] = ()  # `name==version` pip installed
    classes: tuple[str, ...] = ()  # its node classes in /object_info
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "pack": self.pack,
            "url": self.url,
            "commit": self.commit,
            "status": self.status,
            "previous_commit": self.previous_commit,
            "requirements": list(self.requirements),
            "classes": list(self.classes),
            "notes": list(self.notes),
        }


def node_classes(count: int) -> str:
    return f"{count} node class" + ("" if count == 1 else "es")


def custom_nodes_dir(layout: InstanceLayout) -> PurePosixPath:
    return layout.comfy_dir / "custom_nodes"


def guard_for(cloud: Cloud, session: Session, layout: InstanceLayout, on_line: Line) -> TorchGuard:
    nodes = cloud.settings.nodes
    return TorchGuard(
        session.conn,
        layout,
        ProtectedSet(nodes.protected),
        on_line=on_line,
        pip_timeout=nodes.pip_timeout,
    )


def record(cloud: Cloud, session: Session, detail: dict[str, Any]) -> None:
    cloud.db.instances.record_event(session.row.id, EventKind.NODES, detail=detail)


async def _exists(session: Session, path: PurePosixPath) -> bool:
    return (await run(session.conn, RemoteCommand.of("test", "-f", path))).exit_code == 0


async def install_pack(
    cloud: Cloud,
    ref: str,
    source: str,
    *,
    git_ref: str | None = None,
    on_line: Line = quiet,
    restart: bool = True,
) -> InstallResult:
    """Install the pack SOURCE names on instance `ref` (see the module docstring)."""
    if git_ref is not None:
        git.check_ref(git_ref)
    src = await resolve_source(cloud.settings, source)
    for warning in src.warnings:
        on_line(f"warning: {warning}")
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        folder = custom_nodes_dir(layout)
        async with changing(
            cloud.settings.remote, session.conn, layout, f"nodes install {src.name}", on_line
        ):
            entries = await list_entries(session.conn, folder)
            if entries is None:
                raise UsageError(
                    f"instance {session.row.display_name} has no custom_nodes folder at {folder}",
                    hint="check the detected ComfyUI folder (comfyfleet exec ID -- ls), or "
                    "give it with [remote] comfy_dir",
                )
            existing = next((e for e in entries if e.name == src.name), None)
            step = _Install(cloud, session, layout, src, on_line, restart=restart)
            if existing is None:
                return await step.fresh(git_ref)
            return await step.update(existing, git_ref)


class _Install:
    """The steps of one install, sharing the session and what was found."""

    def __init__(
        self,
        cloud: Cloud,
        session: Session,
        layout: InstanceLayout,
        src: PackSource,
        on_line: Line,
        *,
        restart: bool = True,
    ) -> None:
        self.cloud, self.session, self.layout, self.src = cloud, session, layout, src
        self.on_line = on_line
        self.restart = restart
        self.folder = custom_nodes_dir(layout)
        self.timeout = cloud.settings.nodes.clone_timeout
        self.event: dict[str, Any] = {"action": "install", "pack": src.name, "url": src.url}
        if src.pack_id:
            self.event["catalog_id"] = src.pack_id

    @property
    def label(self) -> str:
        return f"pack {self.src.name!r}"

    async def fresh(self, git_ref: str | None) -> InstallResult:
        conn, name = self.session.conn, self.src.name
        staging = self.layout.comfy_dir / STAGING / name
        await remove_tree(conn, staging)
        try:
            self.on_line(f"cloning {self.src.url}")
            await git.clone(conn, self.src.url, staging, timeout=self.timeout)
            if git_ref is not None:
                await self._checkout(staging, git_ref)
            await git.update_submodules(conn, staging, timeout=self.timeout)
            commit = await git.head(conn, staging)
            self.event["commit"] = commit
            self.on_line(f"{name} at {commit}")
            guarded = await self._requirements(staging)
            await move_in(conn, self.folder, staging, name)
        except BaseException as exc:
            with contextlib.suppress(ComfyfleetError):
                await remove_tree(conn, staging)
            self._failed(exc, f"{name} was not installed (custom_nodes is as it was)")
            raise
        finally:
            with contextlib.suppress(ComfyfleetError):
                await run(conn, RemoteCommand.of("rmdir", "--", staging.parent))
        notes = await self._notes(self.folder / name)
        return await self._verify("installed", commit, None, guarded, notes)

    async def update(self, existing: Entry, git_ref: str | None) -> InstallResult:
        conn, path = self.session.conn, self.folder / existing.name
        if existing.commit is None or not self.src.same_repo(existing.url):
            held = existing.url or "no git checkout"
            raise UsageError(
                f"custom_nodes/{existing.name} on instance {self.session.row.display_name} "
                f"already exists and holds {held}, not {self.src.url}",
                hint=f"remove it first: comfyfleet nodes rm {self.session.row.vast_id} "
                f"{existing.name}",
            )
        done = InstallResult(
            self.session.row.display_name,
            existing.name,
            self.src.url,
            existing.commit,
            "already-installed",
        )
        if git_ref is None:
            self.on_line(f"{existing.name} is already installed at {existing.commit}")
            return done
        if existing.dirty:
            raise UsageError(
                f"custom_nodes/{existing.name} has local changes; checking out {git_ref} "
                "would mix them in",
                hint="commit or discard them on the instance, or remove the pack first",
            )
        await git.fetch(conn, path, timeout=self.timeout)
        commit = await self._resolve(path, git_ref)
        if commit == existing.commit:
            self.on_line(f"{existing.name} is already installed at {commit} ({git_ref})")
            return done
        self.event.update(previous_commit=existing.commit, commit=commit, ref=git_ref)
        try:
            self.on_line(f"checking out {git_ref} ({commit})")
            await git.checkout(conn, path, commit)
            await git.update_submodules(conn, path, timeout=self.timeout)
            guarded = await self._requirements(path)
        except BaseException as exc:
            with contextlib.suppress(ComfyfleetError):
                await git.checkout(conn, path, existing.commit)
                await git.update_submodules(conn, path, timeout=self.timeout)
            self._failed(exc, f"{existing.name} is back at {existing.commit}")
            raise
        notes = await self._notes(path)
        return await self._verify("updated", commit, existing.commit, guarded, notes)

    # --- steps -----------------------------------------------------------------------------

    async def _resolve(self, repo: PurePosixPath, git_ref: str) -> str:
        commit = await git.resolve_commit(self.session.conn, repo, git_ref)
        if commit is None:
            raise UsageError(
                f"{self.src.url} has no tag, branch or commit {git_ref!r}",
                hint="list its tags with: git ls-remote --tags " + self.src.url,
            )
        return commit

    async def _checkout(self, repo: PurePosixPath, git_ref: str) -> None:
        commit = await self._resolve(repo, git_ref)
        self.event["ref"] = git_ref
        self.on_line(f"checking out {git_ref} ({commit})")
        await git.checkout(self.session.conn, repo, commit)

    async def _requirements(self, repo: PurePosixPath) -> GuardResult | None:
        requirements = repo / "requirements.txt"
        if not await _exists(self.session, requirements):
            self.on_line("no requirements.txt")
            return None
        guard = guard_for(self.cloud, self.session, self.layout, self.on_line)
        result = await guard.install_requirements(requirements, repo, label=self.label)
        self.event["requirements"] = list(result.installed)
        return result

    async def _notes(self, path: PurePosixPath) -> list[str]:
        notes = []
        if await _exists(self.session, path / "install.py"):
            notes.append(INSTALL_PY_NOTE)
        return notes

    def _failed(self, exc: BaseException, state: str) -> None:
        """Record a failed install; the error then also says what became of the pack."""
        if not isinstance(exc, ComfyfleetError):
            return
        result = "failed"
        if isinstance(exc, ProtectedChangeRefused):
            result = "refused"
            self.event["changes"] = list(exc.changes)
        elif isinstance(exc, ProtectedRolledBack):
            result = "rolled-back"
        self.event.update(result=result, error=exc.message.splitlines()[0], state=state)
        record(self.cloud, self.session, self.event)
        if isinstance(exc, NodePackError | RemoteError):
            exc.message = f"{exc.message}\n{state}"

    async def _verify(
        self,
        status: Status,
        commit: str,
        previous: str | None,
        guarded: GuardResult | None,
        notes: list[str],
    ) -> InstallResult:
        name = self.src.name
        self.event["result"] = status

        def result(classes: tuple[str, ...], notes: tuple[str, ...]) -> InstallResult:
            installed = guarded.installed if guarded else ()
            return InstallResult(
                self.session.row.display_name, name, self.src.url, commit, status, previous,
                installed, classes, notes,
            )  # fmt: skip

        if not self.restart:
            self.event["restart"] = "deferred"
            record(self.cloud, self.session, self.event)
            return result((), (*notes, RESTART_DEFERRED_NOTE))
        try:
            await restart(
                self.cloud, self.session, self.layout, on_line=self.on_line, why=f"{status} {name}"
            )
            found = await loaded(
                self.cloud, self.session, self.layout, name, f"custom_nodes.{name}"
            )
            _check_loaded(found, self.session, name)
        except PackImportFailed as exc:
            self.event.update(result="import-failed", error=exc.message.splitlines()[0])
            record(self.cloud, self.session, self.event)
            raise
        except BaseException as exc:  # installed, but not seen loading (lost connection...)
            error = exc.message if isinstance(exc, ComfyfleetError) else type(exc).__name__
            self.event.update(result="unverified", error=error.splitlines()[0])
            record(self.cloud, self.session, self.event)
            raise
        classes = tuple(sorted(found.classes or ()))
        if found.classes is not None and not classes:
            notes.append("the pack loaded but added no node classes")
        self.event["classes"] = len(classes)
        record(self.cloud, self.session, self.event)
        self.on_line(f"{name}: {node_classes(len(classes))}")
        return result(classes, tuple(notes))


def _check_loaded(found: Loaded, session: Session, name: str) -> None:
    """PackImportFailed unless the log or /object_info shows the pack loaded."""
    rm = f"comfyfleet nodes rm {session.row.vast_id} {name}"
    hint = (
        f"the pack stays installed so you can look at it (comfyfleet logs "
        f"{session.row.vast_id}); remove it with: {rm}"
    )
    where = f"instance {session.row.display_name}"
    if found.failed:
        assert found.line is not None
        lines = [found.line.text, *found.details]
        raise PackImportFailed(
            f"ComfyUI on {where} could not import {name}:"
            + "".join(f"\n  | {line}" for line in lines),
            log_lines=lines,
            hint=hint,
        )
    if found.imported is None:
        raise PackImportFailed(
            f"no node class of {name} appears in ComfyUI's /object_info on {where}, and its "
            "log does not report importing it",
            log_lines=[],
            hint=hint,
        )
