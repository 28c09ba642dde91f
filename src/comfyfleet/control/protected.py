"""The torch guard's decisions, as pure functions: what is protected, what a plan would
change, which requirement lines are to blame, the constraints to install under, and what to
put back when the protected set changed anyway.

Protected: torch, torchvision, torchaudio, torchsde, xformers, triton, every nvidia-*
package, and the user's additions (`[nodes] protected`, names or globs). Names compare in
PEP 503 form, so `NVIDIA_CUDNN_CU12` is `nvidia-cudnn-cu12`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from comfyfleet.control.versions import parse_requirement
from comfyfleet.remote.pipreport import Planned, canonical, requirement_name

DEFAULT_PROTECTED = (
    "torch",
    "torchvision",
    "torchaudio",
    "torchsde",
    "xformers",
    "triton",
    "nvidia-*",
)

#: name -> (name as pip spells it, version): what `pipreport.parse_pip_list` returns.
Installed = Mapping[str, tuple[str, str]]


class ProtectedSet:
    """Package names and globs that node requirements must never change."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.patterns = tuple(dict.fromkeys(canonical(p) for p in (*DEFAULT_PROTECTED, *extra)))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical(name)
        return any(fnmatch.fnmatchcase(key, p) for p in self.patterns)

    def pick(self, installed: Installed) -> dict[str, tuple[str, str]]:
        """The protected part of an installed set (same shape, sorted by name)."""
        return {k: installed[k] for k in sorted(installed) if k in self}


@dataclass(frozen=True)
class Change:
    """A protected package whose version would change (or did): None = not installed."""

    name: str
    before: str | None
    after: str | None

    def describe(self) -> str:
        old = self.before or "(not installed)"
        new = self.after or "(removed)"
        return f"{self.name} {old} -> {new}"


@dataclass(frozen=True)
class Refusal:
    """A protected change a plan would make, and the requirement lines that lead to it."""

    change: Change
    lines: tuple[str, ...]  # requirement lines as written; empty when none could be named
    via: tuple[str, ...]  # the requested packages it comes through (when no line names them)

    def describe(self) -> str:
        if self.lines:
            because = "required by " + ", ".join(repr(line) for line in self.lines)
        elif self.via:
            because = "required through " + ", ".join(self.via)
        else:
            because = "required by a dependency of the requirements"
        return f"{self.change.describe()} ({because})"


def refusals(
    plan: Sequence[Planned],
    installed: Installed,
    protected: ProtectedSet,
    requirement_lines: Sequence[str] = (),
) -> list[Refusal]:
    """Every protected package the plan would install, upgrade, downgrade or reinstall."""
    by_key = {p.key: p for p in plan}
    out: list[Refusal] = []
    for item in plan:
        if item.name not in protected:
            continue
        name, version = installed.get(item.key, (item.name, None))
        change = Change(name, version, item.version)
        roots = _roots(item.key, by_key, installed)
        lines = tuple(line for line in requirement_lines if _forces(line, roots, installed))
        via = tuple(by_key[r].name for r in sorted(roots) if r in by_key)
        out.append(Refusal(change, lines, via))
    return out


def _excludes(text: str, installed: Installed) -> bool | None:
    """Whether requirement `text` rules out the installed version of what it names (so it
    forces a change); None when that cannot be told (unparsable, or not installed)."""
    req = parse_requirement(text)
    if req is None or req.name not in installed:
        return None
    return not req.allows(installed[req.name][1])


def _forces(line: str, roots: set[str], installed: Installed) -> bool:
    name = requirement_name(line)
    return name in roots and _excludes(line, installed) is not False


def _roots(key: str, plan: Mapping[str, Planned], installed: Installed) -> set[str]:
    """The requested packages of the plan that force `key` into it, following the plan's
    dependency edges upward. First only edges whose requirement rules out the installed
    version of what it names (`ultralytics` needing `torch>=1.8` does not force a new
    torch; `xformers==0.0.33` needing `torch==2.9.0` does); when that finds nothing (a
    package that moves only to stay consistent with another), every edge."""
    edges: dict[str, list[tuple[str, bool | None]]] = {}  # child -> (parent, excludes)
    for item in plan.values():
        for text in item.requires:
            child = requirement_name(text)
            if child is not None and child in plan:
                edges.setdefault(child, []).append((item.key, _excludes(text, installed)))
    for strict in (True, False):
        seen, todo, roots = {key}, [key], set()
        while todo:
            current = todo.pop()
            if plan[current].requested:
                roots.add(current)
            for parent, excludes in edges.get(current, []):
                if parent not in seen and not (strict and excludes is False):
                    seen.add(parent)
                    todo.append(parent)
        if roots:
            return roots
    return set()


def constraints(protected_installed: Installed) -> str:
    """A pip constraints file pinning each installed protected package to its version."""
    return "".join(f"{name}=={version}\n" for name, version in protected_installed.values())


def changes(before: Installed, after: Installed) -> list[Change]:
    """How the protected set differs between two snapshots (added, removed, changed)."""
    out: list[Change] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old[1] == new[1]:
            continue
        name = (old or new or (key, ""))[0]
        out.append(Change(name, old[1] if old else None, new[1] if new else None))
    return out


@dataclass(frozen=True)
class Restore:
    """What puts a protected set back: exact pins to reinstall, names to uninstall."""

    reinstall: tuple[str, ...]  # `name==version`, installed with --no-deps
    uninstall: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.reinstall and not self.uninstall


def restore_plan(found: Sequence[Change]) -> Restore:
    """Reinstall what changed or went missing at its old version; uninstall what appeared."""
    pins = tuple(f"{c.name}=={c.before}" for c in found if c.before is not None)
    extra = tuple(c.name for c in found if c.before is None)
    return Restore(pins, extra)
