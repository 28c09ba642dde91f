"""Safe local paths for names that come from a server (untrusted)."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

# Characters no file name we write may hold: separators, NUL and other control characters,
# and the ones Windows refuses.
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10))} | {
    f"LPT{i}" for i in range(1, 10)
}


class UnsafePath(ValueError):
    """A server-given name that would escape its folder or is not a usable file name."""


def safe_component(name: str) -> str:
    """Return `name` if it is one plain path component, else raise UnsafePath."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        raise UnsafePath(f"unsafe path component {name!r}")
    if _BAD_CHARS.search(name):
        raise UnsafePath(f"path component {name!r} holds a control or reserved character")
    if name.split(".")[0].upper() in _WINDOWS_RESERVED or name.endswith((" ", ".")):
        raise UnsafePath(f"path component {name!r} is reserved on Windows")
    return name


def safe_relative(*parts: str) -> PurePosixPath:
    """Join server-given parts ('a/b' subfolders allowed) into a relative path that cannot escape.

    Empty parts are skipped. Absolute paths, `..`, backslashes and control characters raise
    UnsafePath.
    """
    pieces: list[str] = []
    for part in parts:
        if not part:
            continue
        if part.startswith("/") or re.match(r"^[A-Za-z]:", part):
            raise UnsafePath(f"absolute path {part!r}")
        pieces.extend(safe_component(p) for p in part.split("/") if p)
    if not pieces:
        raise UnsafePath("empty path")
    return PurePosixPath(*pieces)


def contained(base: Path, relative: PurePosixPath) -> Path:
    """`base / relative`, checked (after resolving symlinks) to stay inside `base`."""
    root = base.resolve()
    target = (root / Path(*relative.parts)).resolve()
    if os.path.commonpath([root, target]) != str(root):
        raise UnsafePath(f"{relative} escapes {base}")
    return target


def unique_path(path: Path) -> Path:
    """`path`, or `name (1).ext`, `name (2).ext`, … if it exists already."""
    if not path.exists():
        return path
    stem, suffix = path.stem, path.suffix
    for n in range(1, 10_000):
        candidate = path.with_name(f"{stem} ({n}){suffix}")
        if not candidate.exists():
            return candidate
    raise UnsafePath(f"too many files named like {path.name}")
