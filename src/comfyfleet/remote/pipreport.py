"""What pip prints, as typed values: `install --dry-run --report -`, `list --format=json`,
and the requirement lines of a requirements file.

Names are compared in their normalized form (PEP 503: lower case, runs of `-_.` as one `-`),
so `Torch`, `nvidia_cudnn_cu12` and `nvidia-cudnn-cu12` meet. The installation report is
pip's documented format (version "1", pip >= 22.2): one item per distribution pip would
install, with `requested` (named on the command line or in the file) and its metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyfleet.errors import RemoteError

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_EXTRA_MARKER = re.compile(r"""\bextra\s*==\s*["']([^"']+)["']""")


def canonical(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str | None:
    """The (normalized) project name a requirement string starts with, else None
    (options such as `-r other.txt`, URLs and paths)."""
    text = spec.strip()
    if not text or text.startswith(("-", ".", "/")) or "://" in text.split("@")[0]:
        return None
    match = _NAME.match(text)
    return canonical(match.group(1)) if match else None


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file: comments, blanks and line
    continuations handled as pip does; options (`-r`, `--index-url`, ...) kept as lines."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


@dataclass(frozen=True)
class Planned:
    """One distribution pip would install (new, upgraded, downgraded or reinstalled)."""

    name: str  # as its metadata spells it
    version: str
    requested: bool  # named by the requirements themselves, not pulled in as a dependency
    requires: tuple[str, ...]  # its Requires-Dist lines (those of extras it was not asked for
    # left out)

    @property
    def key(self) -> str:
        return canonical(self.name)


def _requires(metadata: Mapping[str, Any], extras: set[str]) -> tuple[str, ...]:
    out: list[str] = []
    for spec in metadata.get("requires_dist") or []:
        if not isinstance(spec, str):
            continue
        marker = _EXTRA_MARKER.search(spec.partition(";")[2])
        if marker is not None and canonical(marker.group(1)) not in extras:
            continue
        out.append(spec)
    return tuple(out)


def parse_report(text: str) -> list[Planned]:
    """pip's installation report (`--report -`) as the distributions it would install."""
    try:
        data = json.loads(text)
        items = data["install"]
        if not isinstance(items, list):
            raise TypeError("install is not a list")
        out: list[Planned] = []
        for item in items:
            meta = item["metadata"]
            asked = item.get("requested_extras") or []
            extras = {canonical(e) for e in asked if isinstance(e, str)}
            out.append(
                Planned(
                    name=str(meta["name"]),
                    version=str(meta["version"]),
                    requested=bool(item.get("requested")),
                    requires=_requires(meta, extras),
                )
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(
            f"pip's installation report could not be read ({exc}): {text[:200]!r}"
        ) from exc
    return out


def parse_pip_list(text: str) -> dict[str, tuple[str, str]]:
    """`pip list --format=json` as normalized name -> (name as spelled, version)."""
    try:
        items = json.loads(text)
        return {
            canonical(str(i["name"])): (str(i["name"]), str(i["version"]))
            for i in items
            if isinstance(i, dict)
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(
            f"pip list printed something other than JSON ({exc}): {text[:200]!r}"
        ) from exc
