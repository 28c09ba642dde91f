"""Python package versions and requirements, enough to tell whether a pin fits what is installed.

Pure functions over the texts `importlib.metadata` gives (`version("torch")`,
`requires("xformers")`), so the rules that compare them are tested with tables and need no
`packaging` on either side. PEP 440 in the parts that matter here: release segments, pre/dev/
post releases, local versions (`2.8.0+cu128` satisfies `==2.8.0`), wildcards (`==2.8.*`),
`~=`, and environment markers as they evaluate on a Linux instance (extras never apply).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STAGES = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "c": 3, "rc": 3, "pre": 3}
_FINAL, _POST = 4, 5
_PART = re.compile(r"(dev|alpha|beta|a|b|c|rc|pre|post)\.?(\d*)", re.IGNORECASE)
_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(\(?)([^;]*?)\)?\s*$"
)
_SPEC = re.compile(r"^\s*(===|==|!=|~=|>=|<=|>|<)\s*([^\s,]+)\s*$")
# Markers that are false on a Linux x86-64 instance (anything else is taken to apply).
_NOT_LINUX = re.compile(
    r"(platform_system|sys_platform|os_name)\s*==\s*['\"](windows|win32|darwin|nt|cygwin)['\"]",
    re.IGNORECASE,
)

VersionKey = tuple[tuple[int, ...], int, int, int]


def normalize_name(name: str) -> str:
    """A distribution name as PEP 503 compares it (`Nvidia_CUBLAS.cu12` -> `nvidia-cublas-cu12`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """The version without its local part (`2.8.0+cu128` -> `2.8.0`)."""
    return version.split("+", 1)[0].strip()


def release(version: str) -> tuple[int, ...]:
    """The release numbers (`2.8.0+cu128` -> (2, 8, 0); `0.0.33.post1` -> (0, 0, 33))."""
    text = public(version).lower().lstrip("v")
    numbers: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.end() != len(piece):
            break
    return tuple(numbers)


def version_key(version: str) -> VersionKey:
    """A sort key: release (zeros trimmed), then stage (dev < a < b < rc < final < post)."""
    text = public(version).lower().lstrip("v")
    numbers = list(release(text))
    while numbers and numbers[-1] == 0:
        numbers.pop()
    rest = re.sub(r"^[\d.]+", "", text).lstrip(".-_")
    stage, number, post = _FINAL, 0, 0
    for match in _PART.finditer(rest):
        word, count = match.group(1).lower(), int(match.group(2) or 0)
        if word == "post":
            post = count + 1
        elif word == "dev" and stage != _FINAL:
            pass  # a dev release of a pre-release sorts with that pre-release here
        else:
            stage, number = _STAGES[word], count
    if post and stage == _FINAL:
        stage = _POST
    return tuple(numbers), stage, number, post


def compare(left: str, right: str) -> int:
    """-1, 0 or 1 as `left` is lower than, equal to or higher than `right` (local parts ignored)."""
    a, b = version_key(left), version_key(right)
    return (a > b) - (a < b)


@dataclass(frozen=True)
class Requirement:
    """One `Requires-Dist` line: a distribution name and its version specifiers."""

    name: str  # normalized
    specs: tuple[tuple[str, str], ...]  # (operator, version)
    text: str

    def allows(self, version: str) -> bool:
        return all(spec_allows(op, wanted, version) for op, wanted in self.specs)


def parse_requirement(text: str) -> Requirement | None:
    """A requirement line as it applies on a Linux instance; None when its marker excludes it
    (an extra, another OS) or the line is not a requirement."""
    line, _, marker = text.partition(";")
    if "extra" in marker or _NOT_LINUX.search(marker):
        return None
    match = _REQUIREMENT.match(line)
    if match is None:
        return None
    specs: list[tuple[str, str]] = []
    for part in match.group(4).split(","):
        if not part.strip():
            continue
        spec = _SPEC.match(part)
        if spec is None:
            return None
        specs.append((spec.group(1), spec.group(2)))
    return Requirement(normalize_name(match.group(1)), tuple(specs), text.strip())


def spec_allows(op: str, wanted: str, version: str) -> bool:
    """Whether `version` satisfies one specifier (`op wanted`)."""
    if op == "===":
        return version.strip() == wanted.strip()
    if wanted.endswith(".*") and op in ("==", "!="):
        prefix = release(wanted[:-2])
        matches = release(version)[: len(prefix)] == prefix
        return matches if op == "==" else not matches
    if op in ("==", "!="):
        # A local version matches a specifier without one (2.8.0+cu128 == 2.8.0).
        same = version.strip() == wanted.strip() if "+" in wanted else compare(version, wanted) == 0
        return same if op == "==" else not same
    order = compare(version, wanted)
    if op == ">=":
        return order >= 0
    if op == "<=":
        return order <= 0
    if op == ">":
        return order > 0
    if op == "<":
        return order < 0
    if op == "~=":
        floor = release(wanted)
        prefix = floor[:-1] if len(floor) > 1 else floor
        return order >= 0 and release(version)[: len(prefix)] == prefix
    return False
