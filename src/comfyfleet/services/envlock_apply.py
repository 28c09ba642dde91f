"""Reproduce a lock on an instance (`comfyfleet env apply ID FILE [--dry-run]`).

    report = await apply_env(cloud, "fresh-box", load_lock(path), on_line=print)
    report.remaining        # every difference left: item, locked, found (empty: identical)

1. The target is read like a lock (`envlock.read_state`; model files without a recorded
   sha256 are hashed only where the lock has a file of the same path) and compared with
   the lock (`control.envlock_diff`). Every model source of the lock is checked before
   anything changes. `dry_run` stops here: the actions apply would take, nothing done.
2. Node packs: cloned or checked out at their locked commit through the node-pack installer
   (its torch guard included) without restarting ComfyUI; `.disabled` states set by
   renaming the entry.
3. pip: `pip freeze` is read again (the packs' requirements are in now) and every locked
   `name==version` the venv lacks is installed with the venv's pip through the torch guard,
   under constraints pinning the protected packages. Protected packages are never changed:
   a lock whose torch & co differ is reported, not forced.
4. Model files: pulled from their recorded source and verified by their locked sha256.
5. ComfyUI is restarted once (when packs or pip packages changed) and each pack checked.
6. The target is read again: what still differs is the report's `remaining` table.

One failing pack, pin group or file is reported and the rest goes on. The pool calls this to
make instances workflow-ready, so it returns a typed report and never prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from comfyfleet.control.envlock_diff import Difference, diff, pip_differences
from comfyfleet.control.envlock_format import EnvLock
from comfyfleet.control.prepare_plan import Unresolved
from comfyfleet.control.protected import ProtectedSet
from comfyfleet.errors import (
    ProtectedChangeRefused,
    RemoteError,
    RemoteTimeout,
    SshUnreachable,
)
from comfyfleet.remote.custom_nodes import move_in
from comfyfleet.remote.tempfiles import temp_file
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.envlock import pip_freeze, read_state
from comfyfleet.services.models import PlannedPull, plan_pull
from comfyfleet.services.nodes import custom_nodes_dir, guard_for
from comfyfleet.services.prepare_steps import (
    ITEM_ERRORS,
    Progress,
    import_failure,
    install_deferred,
    pull_first,
    restart_and_check,
)
from comfyfleet.services.remote_ops import changing, open_session
from comfyfleet.util.lines import Line, quiet

PIP_AFTER_PACKS = (
    "pip packages are compared again once the packs' requirements are in: "
    "some of these pins may be settled by them"
)
Status = Literal["planned", "done", "failed"]


@dataclass(frozen=True)
class Action:
    """Something apply does (or, in a dry run, would do) about one difference."""

    item: str
    action: str  # install-pack, enable-pack, disable-pack, pip-install, pull, import-check
    detail: str
    status: Status
    error: str | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "action": self.action,
            "detail": self.detail,
            "status": self.status,
            "error": self.error,
            "hint": self.hint,
        }


@dataclass
class ApplyReport:
    """What apply did, and every difference left between the instance and the lock."""

    instance: str
    locked_from: str | None
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    remaining: list[Difference] = field(default_factory=list)
    restart_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.remaining and not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "locked_from": self.locked_from,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "actions": [a.to_json() for a in self.actions],
            "remaining": [d.to_json() for d in self.remaining],
            "restarted": self.restart_seconds is not None,
            "restart_seconds": self.restart_seconds,
            "notes": self.notes,
        }


def _detail(d: Difference) -> str:
    if d.pin is not None:
        return d.pin
    if d.pack is not None and d.pack.commit is not None:
        return f"{d.pack.url} at {d.pack.commit}"
    if d.model is not None:
        return f"from {d.model.source} (sha256 {d.model.sha256})"
    return d.locked


async def apply_env(
    cloud: Cloud,
    ref: str,
    lock: EnvLock,
    *,
    dry_run: bool = False,
    on_line: Line = quiet,
    on_progress: Progress | None = None,
) -> ApplyReport:
    """Make instance `ref` match `lock` as far as it safely can (see the module docstring)."""
    protected = ProtectedSet(cloud.settings.nodes.protected)
    locked_paths = {m.path for m in lock.models}
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        on_line(f"reading the environment of {session.row.display_name}")
        found = await read_state(
            cloud, session, layout, hash_which=locked_paths.__contains__, on_line=on_line
        )
        instance = session.row.display_name
    differences = diff(lock, found, protected)
    pulls: dict[str, PlannedPull] = {}
    for d in differences:
        m = d.model
        if d.action == "pull" and m is not None and m.source is not None:
            # a bad source in the lock fails here, before anything changes
            pulls[d.item] = await plan_pull(
                cloud.settings, m.source, folder=m.directory, name=m.name, sha256=m.sha256
            )
    name = lock.instance.get("name") or lock.instance.get("vast_id")
    report = ApplyReport(instance, str(name) if name is not None else None, dry_run)
    if dry_run:
        report.actions = [
            Action(d.item, d.action, _detail(d), "planned")
            for d in differences
            if d.action != "report"
        ]
        report.remaining = differences
        if {"install-pack", "pip-install"} <= {a.action for a in report.actions}:
            report.notes.append(PIP_AFTER_PACKS)
        return report
    steps = [d for d in differences if d.section == "custom_nodes" and d.action != "report"]
    loaded = await _packs(cloud, ref, steps, found, report, on_line)
    pip_changed = await _pip(cloud, ref, lock, protected, report, on_line)
    for item, planned in pulls.items():
        got = await pull_first(
            cloud, ref, [planned], item=planned.path, on_progress=on_progress, on_line=on_line
        )
        report.actions.append(_done(item, "pull", f"from {planned.source.spec}", got))
    packs_changed = any(
        a.status == "done" and a.item.startswith("custom_nodes/") for a in report.actions
    )
    if packs_changed or pip_changed:
        why = "env apply changed " + ("node packs" if packs_changed else "pip packages")
        restarted = await restart_and_check(cloud, ref, loaded, why=why, on_line=on_line)
        report.restart_seconds = restarted.seconds
        for pack, seen in restarted.packs.items():
            failure = import_failure(pack, seen)
            if failure is not None:
                report.actions.append(_done(f"custom_nodes/{pack}", "import-check", "", failure))
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        after = await read_state(cloud, session, layout, hash_which=locked_paths.__contains__)
    report.remaining = diff(lock, after, protected)
    return report


def _done(item: str, action: str, detail: str, got: object) -> Action:
    if isinstance(got, Unresolved):
        return Action(item, action, detail, "failed", got.detail or got.reason, got.fix)
    return Action(item, action, detail, "done")


async def _packs(
    cloud: Cloud,
    ref: str,
    steps: Sequence[Difference],
    found: EnvLock,
    report: ApplyReport,
    on_line: Line,
) -> list[str]:
    """Install, check out, enable and disable packs; returns the enabled ones changed."""
    if not steps:
        return []
    have = {p.base: p for p in found.custom_nodes}
    changed: list[str] = []
    async with open_session(cloud, ref) as session:
        folder = custom_nodes_dir(await session.layout(cloud))

        async def rename(old: str, new: str) -> None:
            if old != new:
                on_line(f"renaming custom_nodes/{old} to {new}")
                await move_in(session.conn, folder, folder / old, new)

        for d in steps:
            want = d.pack
            assert want is not None and want.url is not None
            current = have.get(want.base)
            try:
                if current is not None and current.disabled:
                    await rename(current.name, want.base)
                if d.action == "install-pack":
                    got = await install_deferred(
                        cloud, ref, want.url, label=want.base, git_ref=want.commit, on_line=on_line
                    )
                    if isinstance(got, Unresolved):
                        report.actions.append(_done(d.item, d.action, _detail(d), got))
                        continue
                    await rename(got.pack, want.base)
                await rename(want.base, want.name)
            except RemoteError as exc:
                if isinstance(exc, SshUnreachable):
                    raise
                report.actions.append(
                    Action(d.item, d.action, _detail(d), "failed", exc.message, exc.hint)
                )
                continue
            report.actions.append(Action(d.item, d.action, _detail(d), "done"))
            if not want.disabled:
                changed.append(want.base)
    return changed


async def _pip(
    cloud: Cloud,
    ref: str,
    lock: EnvLock,
    protected: ProtectedSet,
    report: ApplyReport,
    on_line: Line,
) -> bool:
    """Install the locked pins the venv lacks (read after the packs), through the guard."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        now = await pip_freeze(session, layout, cloud.settings.nodes.pip_timeout)
        pins = [d.pin for d in pip_differences(lock.pip, now, protected) if d.pin is not None]
        if not pins:
            return False
        detail = " ".join(pins)
        guard = guard_for(cloud, session, layout, on_line)
        text = "".join(f"{pin}\n" for pin in pins)
        try:
            async with (
                changing(
                    cloud.settings.remote, session.conn, layout, "env apply: pip packages", on_line
                ),
                temp_file(session.conn, text, suffix=".txt") as requirements,
            ):
                await guard.install_requirements(
                    requirements, layout.comfy_dir, label="the lock's pip packages"
                )
        except ProtectedChangeRefused as exc:
            error = "; ".join(exc.changes) or exc.message
            report.actions.append(Action("pip", "pip-install", detail, "failed", error, exc.hint))
            return False
        except (*ITEM_ERRORS, RemoteTimeout) as exc:
            report.actions.append(
                Action("pip", "pip-install", detail, "failed", exc.message, exc.hint)
            )
            return True  # pip may have installed part of it before failing
    report.actions.append(Action("pip", "pip-install", detail, "done"))
    return True


__all__ = ["Action", "ApplyReport", "apply_env"]
