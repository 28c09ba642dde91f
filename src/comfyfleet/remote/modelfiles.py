"""Model files on an instance: their state, placement, index, listing and removal.

Everything runs as one small stdlib-only Python program on the instance (its ComfyUI
interpreter, `python -I`), one call per step, values as arguments and JSON on stdin/stdout:

    files = ModelFiles(conn, python="/venv/main/bin/python", root="/workspace/ComfyUI/models")
    state = await files.state("loras/x.safetensors")     # file, .part, free space, index entry
    await files.begin("loras/x.safetensors", {...})      # note which source the .part is from
    digest = await files.sha256(files.part_path("loras/x.safetensors"))
    entry = await files.place("loras/x.safetensors", {...})   # .part -> file, index updated

The index `<models>/.comfyfleet-models.json` records, per path relative to models/, the
sha256, size and source of what comfyfleet placed, and which source each `.part` is from. It
is rewritten atomically (temporary file, fsync, rename) under an exclusive lock, so pulls
running side by side never lose each other's entries. Paths are checked on both ends: never
absolute, never `..`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from comfyfleet.errors import RemoteError, UsageError
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.ssh import SshConnection

INDEX_NAME = ".comfyfleet-models.json"
PART_SUFFIX = ".part"
_HEX64 = re.compile(r"^[0-9a-f]{64}\b")

# argv: SUBCOMMAND MODELS_ROOT ARGS...; stdin: JSON for begin/place/record.
_TOOL = r"""
import fcntl, hashlib, json, os, stat, sys, time
INDEX, LOCK = ".comfyfleet-models.json", ".comfyfleet-models.lock"
cmd, root, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if not os.path.isabs(root):
    sys.exit("comfyfleet-models: the models folder must be absolute")

def rel_ok(rel):
    norm = os.path.normpath(rel)
    if os.path.isabs(rel) or norm != rel or norm == ".." or norm.startswith("../"):
        sys.exit("comfyfleet-models: refusing the path %r" % rel)
    return os.path.join(root, rel)

def load():
    path = os.path.join(root, INDEX)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        data = {}
    except ValueError:  # a damaged index is set aside, never overwritten
        os.replace(path, path + ".damaged-%d" % time.time())
        data = {}
    data = data if isinstance(data, dict) else {}
    data["version"] = 1
    for key in ("files", "partial"):
        if not isinstance(data.get(key), dict):
            data[key] = {}
    return data

def save(data):
    path = os.path.join(root, INDEX)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

def lock():
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd

def info(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"size": 0, "regular": False, "error": str(exc)}
    return {"size": st.st_size, "regular": stat.S_ISREG(st.st_mode), "mtime": st.st_mtime}

def free(path):
    while path and not os.path.isdir(path):
        path = os.path.dirname(path)
    st = os.statvfs(path or "/")
    return st.f_bavail * st.f_frsize

def unlink(path):
    if os.path.lexists(path) and not os.path.isdir(path):
        os.unlink(path)
        return True
    return False

out = {}
if cmd == "state":
    dest = rel_ok(args[0])
    data = load()
    part = info(dest + ".part")
    out = {"dest": info(dest), "part": part["size"] if part else None,
           "free": free(os.path.dirname(dest)),
           "entry": data["files"].get(args[0]), "partial": data["partial"].get(args[0])}
elif cmd in ("begin", "place", "record", "discard"):
    dest = rel_ok(args[0])
    record = json.load(sys.stdin) if cmd != "discard" else None
    fd = lock()
    data = load()
    if cmd == "begin":
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        data["partial"][args[0]] = record
    elif cmd == "discard":
        out["removed"] = unlink(dest + ".part")
        data["partial"].pop(args[0], None)
    else:
        if cmd == "place":
            os.replace(dest + ".part", dest)
        st = os.stat(dest)
        record["size"], record["mtime"] = st.st_size, st.st_mtime
        data["files"][args[0]] = record
        data["partial"].pop(args[0], None)
        out = {"entry": record}
    save(data)
    os.close(fd)
elif cmd == "remove":
    found = [r for r in args if os.path.lexists(rel_ok(r)) or os.path.lexists(rel_ok(r) + ".part")]
    if found:
        rel = found[0]
        dest = rel_ok(rel)
        if os.path.isdir(dest) and not os.path.islink(dest):
            sys.exit("comfyfleet-models: %s is a folder, not a model file" % rel)
        fd = lock()
        data = load()
        before = info(dest)
        out = {"removed": rel, "size": before["size"] if before else None,
               "file": unlink(dest), "part": unlink(dest + ".part"),
               "entry": data["files"].pop(rel, None)}
        data["partial"].pop(rel, None)
        save(data)
        os.close(fd)
elif cmd == "list":
    found = {}
    for folder in args:
        top = rel_ok(folder)
        files = found[folder] = []
        for base, dirs, names in os.walk(top, followlinks=True):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(base, name)
                st = info(full)
                if st and st["regular"]:
                    files.append([os.path.relpath(full, top), st["size"], st["mtime"]])
    out = {"folders": found, "index": load()["files"]}
elif cmd == "sha256":
    digest = hashlib.sha256()
    with open(rel_ok(args[0]), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    out = {"sha256": digest.hexdigest()}
else:
    sys.exit("comfyfleet-models: unknown command %r" % cmd)
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class FileState:
    """One model path on the instance: the file, its `.part`, free space, index records."""

    size: int | None  # None: no file at the destination
    mtime: float | None
    regular: bool  # a regular file (False: a folder or a device is in the way)
    part_size: int | None  # None: no `.part`
    free_bytes: int  # free space where the file goes
    entry: Mapping[str, Any] | None  # the index's record of the file
    partial: Mapping[str, Any] | None  # the index's record of the `.part`

    @property
    def exists(self) -> bool:
        return self.size is not None


@dataclass(frozen=True)
class Removed:
    path: str  # relative to models/
    size: int | None
    entry: Mapping[str, Any] | None
    had_file: bool
    had_part: bool


@dataclass(frozen=True)
class Listing:
    """Files under each listed folder (path relative to it, size, mtime), the index's records."""

    folders: Mapping[str, Sequence[tuple[str, int, float]]]
    index: Mapping[str, Mapping[str, Any]]


def record_holds(entry: Mapping[str, Any] | None, size: int | None, mtime: float | None) -> bool:
    """Whether the index's `entry` still describes the file: it keeps the size and time it had
    when recorded (a file replaced or rewritten since is not the one recorded)."""
    return (
        entry is not None
        and size is not None
        and entry.get("size") == size
        and entry.get("mtime") == mtime
    )


def check_rel(rel: str) -> str:
    """`rel` if a plain relative path (the caller validated its characters), else UsageError."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise UsageError(
            f"{rel!r} is not a path inside the models folder",
            hint="write FOLDER/NAME, e.g. loras/detail.safetensors",
        )
    return rel


class ModelFiles:
    """The model files of one instance, reached over an open SSH connection."""

    def __init__(self, conn: SshConnection, *, python: str, root: PurePosixPath) -> None:
        self.conn = conn
        self.python = python
        self.root = root

    def path(self, rel: str) -> PurePosixPath:
        return self.root / check_rel(rel)

    def part_path(self, rel: str) -> PurePosixPath:
        return self.root / (check_rel(rel) + PART_SUFFIX)

    async def _tool(self, command: str, *args: str, stdin: Any = None) -> dict[str, Any]:
        cmd = RemoteCommand.of(self.python, "-I", "-c", _TOOL, command, self.root, *args)
        data = None if stdin is None else json.dumps(stdin).encode()
        done = await run(self.conn, cmd, stdin=data)
        if done.exit_code != 0:
            tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.exit_code}"]
            raise RemoteError(
                f"managing model files on {self.conn.target.describe()} failed "
                f"({command}): {tail[0]}",
                hint="check that the ComfyUI folder is writable (comfyfleet exec ID -- ls -la)",
            )
        try:
            answer: dict[str, Any] = json.loads(done.stdout)
        except ValueError as exc:
            raise RemoteError(f"the model files tool answered no JSON ({command})") from exc
        return answer

    async def state(self, rel: str) -> FileState:
        got = await self._tool("state", check_rel(rel))
        dest = got.get("dest") or None
        return FileState(
            size=dest["size"] if dest else None,
            mtime=dest.get("mtime") if dest else None,
            regular=bool(dest and dest.get("regular")),
            part_size=got.get("part"),
            free_bytes=int(got.get("free") or 0),
            entry=got.get("entry"),
            partial=got.get("partial"),
        )

    async def begin(self, rel: str, partial: Mapping[str, Any]) -> None:
        """Record which source the `.part` of `rel` comes from (its folder is created)."""
        await self._tool("begin", check_rel(rel), stdin=dict(partial))

    async def place(self, rel: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Move the verified `.part` to its name and record `entry` (size added)."""
        got = await self._tool("place", check_rel(rel), stdin=dict(entry))
        return dict(got["entry"])

    async def record(self, rel: str, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Record `entry` for a file already in place (size added)."""
        got = await self._tool("record", check_rel(rel), stdin=dict(entry))
        return dict(got["entry"])

    async def discard(self, rel: str) -> bool:
        """Delete the `.part` of `rel` and its record; True when there was one."""
        return bool((await self._tool("discard", check_rel(rel))).get("removed"))

    async def remove(self, candidates: Sequence[str]) -> Removed | None:
        """Delete the first of `candidates` that exists (with its `.part` and record);
        None when none does."""
        got = await self._tool("remove", *(check_rel(c) for c in candidates))
        if not got.get("removed"):
            return None
        return Removed(
            got["removed"], got.get("size"), got.get("entry"), bool(got["file"]), bool(got["part"])
        )

    async def listing(self, folders: Sequence[str]) -> Listing:
        got = await self._tool("list", *(check_rel(f) for f in folders))
        found = {
            k: [(str(p), int(s), float(m)) for p, s, m in v] for k, v in got["folders"].items()
        }
        return Listing(found, got.get("index") or {})

    async def sha256(self, path: PurePosixPath) -> str:
        """The sha256 of a file on the instance (`sha256sum`; the tool where it is missing)."""
        done = await run(self.conn, RemoteCommand.of("sha256sum", "--", path))
        match = _HEX64.match(done.stdout.strip()) if done.exit_code == 0 else None
        if match:
            return match.group(0)
        if done.exit_code != 127:
            raise RemoteError(
                f"sha256sum of {path} failed on {self.conn.target.describe()}: "
                f"{done.stderr.strip()[-300:]}"
            )
        rel = path.relative_to(self.root).as_posix()
        return str((await self._tool("sha256", rel))["sha256"])
