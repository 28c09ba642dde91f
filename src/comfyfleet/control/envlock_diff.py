"""How a target instance differs from a lock, and what `env apply` does about each difference.

    found = diff(lock, target, ProtectedSet(settings.nodes.protected))
    [d for d in found if d.action != "report"]     # what apply changes
    [d for d in found if d.action == "report"]     # what it only reports

Actions, by section:

    comfyui, python  report        ComfyUI's commit or version, the venv's Python: never
                                   changed (an update is the image's business)
    protected        report        torch & co are never changed, whatever the lock says
    custom_nodes     install-pack  missing, or at another commit: cloned/checked out at the
                                   locked commit through the node-pack installer
                     enable-pack / disable-pack   only the `.disabled` state differs
                     report        no git checkout in the lock, another repository in the
                                   way, or a pack the lock does not have (left as it is)
    pip              pip-install   a `name==version` line of the lock the venv lacks or
                                   has at another version (protected names excluded)
                     report        other lines (`-e`, `name @ url`), and packages the lock
                                   does not have (left installed)
    models           pull          missing, with a recorded source and sha256
                     report        no source recorded, another file in the way, or a
                                   file the lock does not have (left as it is)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from comfyfleet.catalog.packs import normalize_repo
from comfyfleet.control.envlock_format import EnvLock, ModelState, PackState
from comfyfleet.control.protected import ProtectedSet
from comfyfleet.remote.pipreport import canonical

Section = Literal["comfyui", "python", "protected", "custom_nodes", "pip", "models"]
Action = Literal["install-pack", "enable-pack", "disable-pack", "pip-install", "pull", "report"]
NONE = "-"

#: `name==version` as pip freeze prints it (extras allowed); anything else is opaque.
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?:\[[A-Za-z0-9._,-]*\])?"
    r"==(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$"
)
_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[.*\])?\s*@")


@dataclass(frozen=True)
class Frozen:
    """One `pip freeze` line: its package (normalized) and version when it is a plain pin."""

    key: str
    line: str
    version: str | None = None

    @property
    def pin(self) -> bool:
        return self.version is not None


def parse_freeze(lines: Iterable[str]) -> dict[str, Frozen]:
    """`pip freeze` lines by package; lines naming no package (`-e /path`) keyed by text."""
    out: dict[str, Frozen] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pin = _PIN.match(line)
        if pin:
            key = canonical(pin.group("name"))
            out[key] = Frozen(key, line, pin.group("version"))
            continue
        named = _NAMED.match(line)
        key = canonical(named.group("name")) if named else line
        out[key] = Frozen(key, line)
    return out


@dataclass(frozen=True)
class Difference:
    """One way the target differs from the lock, and what apply does about it."""

    section: Section
    item: str
    locked: str
    found: str
    action: Action
    note: str = ""
    pack: PackState | None = None  # the locked pack (custom_nodes actions)
    model: ModelState | None = None  # the locked file (pull)
    pin: str | None = None  # the `name==version` to install (pip-install)

    @property
    def row(self) -> tuple[str, str, str]:
        return (self.item, self.locked, self.found)

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "item": self.item,
            "locked": self.locked,
            "found": self.found,
            "action": self.action,
            "note": self.note,
        }


def _comfy(lock: EnvLock, found: EnvLock) -> list[Difference]:
    want, have = lock.comfyui, found.comfyui
    out: list[Difference] = []
    note = "ComfyUI itself is never changed by env apply"
    if want.commit is not None and want.commit != have.commit:
        shown = have.commit or f"version {have.version or '?'} (not a git checkout)"
        out.append(Difference("comfyui", "ComfyUI", want.commit, shown, "report", note))
    elif want.commit is None and want.version and have.version and want.version != have.version:
        out.append(Difference("comfyui", "ComfyUI", want.version, have.version, "report", note))
    if want.python and have.python and want.python != have.python:
        note = "packages pinned for another Python may not install"
        out.append(Difference("python", "Python", want.python, have.python, "report", note))
    return out


def _protected(lock: EnvLock, found: EnvLock) -> list[Difference]:
    want = {canonical(k): (k, v) for k, v in lock.protected.items()}
    have = {canonical(k): (k, v) for k, v in found.protected.items()}
    out: list[Difference] = []
    for key in sorted(set(want) | set(have)):
        old, new = want.get(key), have.get(key)
        if old is not None and new is not None and old[1] == new[1]:
            continue
        name = (old or new or (key, ""))[0]
        out.append(
            Difference(
                "protected",
                f"protected/{name}",
                old[1] if old else NONE,
                new[1] if new else NONE,
                "report",
                "protected packages are never changed: rent an instance with this torch",
            )
        )
    return out


def _same_repo(a: str | None, b: str | None) -> bool:
    """Same repository, or nothing to tell them apart by (non-git entries)."""
    return a is None or b is None or normalize_repo(a) == normalize_repo(b)


def _pack(want: PackState, have: PackState | None) -> Difference | None:
    item = f"custom_nodes/{want.base}"
    found = have.describe() if have else NONE
    same = have is not None and have.name == want.name and have.commit == want.commit
    if same and have is not None and _same_repo(want.url, have.url):
        return None
    if not want.reproducible:
        if have is not None and have.kind == want.kind and have.commit is None:
            return None  # the same kind of non-git entry: nothing to compare it by
        note = "not a git checkout on the locked instance: copy it by hand"
        return Difference("custom_nodes", item, want.describe(), found, "report", note, want)
    assert want.url is not None
    if have is not None and (have.url is None or not _same_repo(want.url, have.url)):
        note = f"another repository is in the way ({have.url or 'no git checkout'}): left as it is"
        return Difference("custom_nodes", item, want.describe(), found, "report", note, want)
    if have is not None and have.commit == want.commit:
        action: Action = "disable-pack" if want.disabled else "enable-pack"
        return Difference("custom_nodes", item, want.describe(), found, action, "", want)
    note = "" if have is None else "checked out at the locked commit"
    return Difference("custom_nodes", item, want.describe(), found, "install-pack", note, want)


def _packs(lock: EnvLock, found: EnvLock) -> list[Difference]:
    have = {p.base: p for p in found.custom_nodes}
    out = [d for p in lock.custom_nodes if (d := _pack(p, have.get(p.base))) is not None]
    locked = {p.base for p in lock.custom_nodes}
    for extra in found.custom_nodes:
        if extra.base not in locked:
            out.append(
                Difference(
                    "custom_nodes",
                    f"custom_nodes/{extra.base}",
                    NONE,
                    extra.describe(),
                    "report",
                    "not in the lock: left as it is",
                )
            )
    return out


def pip_differences(
    locked: Sequence[str], found: Sequence[str], protected: ProtectedSet
) -> list[Difference]:
    """The pip section of the diff (also recomputed by apply after the packs are in)."""
    want = {k: v for k, v in parse_freeze(locked).items() if k not in protected}
    have = {k: v for k, v in parse_freeze(found).items() if k not in protected}
    out: list[Difference] = []
    for key in sorted(want):
        w, h = want[key], have.get(key)
        if h is not None and h.line == w.line:
            continue
        shown = h.line if h else NONE
        if w.pin:
            out.append(Difference("pip", f"pip/{key}", w.line, shown, "pip-install", pin=w.line))
        else:
            note = "not a plain name==version: install it by hand"
            out.append(Difference("pip", f"pip/{key}", w.line, shown, "report", note))
    for key in sorted(set(have) - set(want)):
        note = "not in the lock: left installed"
        out.append(Difference("pip", f"pip/{key}", NONE, have[key].line, "report", note))
    return out


def _models(lock: EnvLock, found: EnvLock) -> list[Difference]:
    have = {m.path: m for m in found.models}
    out: list[Difference] = []
    for want in lock.models:
        item, h = f"models/{want.path}", have.get(want.path)
        locked = want.sha256 or "?"
        if h is not None and h.sha256 is not None and h.sha256 == want.sha256:
            continue
        if h is not None:
            note = "another file is in the way: left as it is"
            out.append(Difference("models", item, locked, h.sha256 or "?", "report", note))
        elif want.source and want.sha256:
            out.append(Difference("models", item, locked, NONE, "pull", "", model=want))
        else:
            note = "no source recorded (not pulled by comfyfleet): copy it by hand"
            out.append(Difference("models", item, locked, NONE, "report", note, model=want))
    locked_paths = {m.path for m in lock.models}
    for extra in found.models:
        if extra.path not in locked_paths:
            note = "not in the lock: left as it is"
            sha = extra.sha256 or f"{extra.size} bytes"
            out.append(Difference("models", f"models/{extra.path}", NONE, sha, "report", note))
    return out


def diff(lock: EnvLock, found: EnvLock, protected: ProtectedSet) -> list[Difference]:
    """Every difference between `lock` and the target's state `found` (module docstring)."""
    return [
        *_comfy(lock, found),
        *_protected(lock, found),
        *_packs(lock, found),
        *pip_differences(lock.pip, found.pip, protected),
        *_models(lock, found),
    ]
