"""The environment of an instance, read over SSH, as an `EnvLock` (`comfyfleet env lock`).

    lock = await lock_env(cloud, "studio", on_line=print)
    save_lock(lock, Path("studio.lock.json"))
    lock = load_lock(Path("studio.lock.json"))          # checked: see control.envlock_format

What is read, over one SSH session: the ComfyUI folder's git HEAD and origin (when it is a
checkout) and /system_stats's versions; every custom_nodes entry with its origin and commit
(`remote.custom_nodes`); the torch guard's protected versions; `pip freeze` of the ComfyUI
venv; every model file with the sha256 and source comfyfleet's index recorded, files without
one hashed on the instance (said so, per file) and their sha256 recorded for the next read.
`env apply` (`envlock_apply`) reads a target the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.control.envlock_format import (
    ComfyState,
    EnvLock,
    ModelState,
    PackState,
    parse_lock,
)
from comfyfleet.errors import ComfyError, UsageError
from comfyfleet.remote import git
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.custom_nodes import list_entries
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.manage import pip_command
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.models import list_on
from comfyfleet.services.models_pull import model_files
from comfyfleet.services.nodes import custom_nodes_dir, guard_for
from comfyfleet.services.remote_ops import Session, open_session
from comfyfleet.services.torch_guard import PIP_FLAGS
from comfyfleet.util.lines import Line, quiet

#: Which model paths (relative to models/) to hash when the index has no sha256 for them.
HashWhich = Callable[[str], bool]


async def _comfy_state(cloud: Cloud, session: Session, layout: InstanceLayout) -> ComfyState:
    conn, folder = session.conn, layout.comfy_dir
    commit = origin = None
    if (await run(conn, RemoteCommand.of("test", "-e", folder / ".git"))).exit_code == 0:
        commit = await git.head(conn, folder)
        origin = await git.origin_url(conn, folder)
    version = python = None
    endpoint = comfy_endpoint(cloud, session.row)
    if endpoint is not None:
        try:
            async with ComfyClient(
                endpoint.url, token=endpoint.token, settings=cloud.settings.comfy, clock=cloud.clock
            ) as client:
                stats = await client.system_stats()
            version, python = stats.comfyui_version or None, stats.python_version or None
        except ComfyError:
            pass  # ComfyUI down: its git commit still says which it is
    if python is not None:
        python = python.split()[0]
    return ComfyState(commit, origin, version, python)


async def pip_freeze(session: Session, layout: InstanceLayout, timeout: float) -> tuple[str, ...]:
    """`pip freeze` of the ComfyUI venv, comments and blank lines left out."""
    cmd = pip_command(layout, ["freeze", *PIP_FLAGS])
    done = await run(session.conn, cmd, timeout=timeout, check=True)
    lines = (line.strip() for line in done.stdout.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


async def read_state(
    cloud: Cloud,
    session: Session,
    layout: InstanceLayout,
    *,
    hash_which: HashWhich = lambda _path: True,
    on_line: Line = quiet,
) -> EnvLock:
    """The instance's environment now (see the module docstring)."""
    notes: list[str] = []
    comfy = await _comfy_state(cloud, session, layout)
    if comfy.commit is None:
        notes.append(
            f"{layout.comfy_dir} is not a git checkout: ComfyUI is known by its version only"
        )
    entries = await list_entries(session.conn, custom_nodes_dir(layout)) or []
    packs = tuple(PackState(e.name, e.kind, e.url, e.commit, e.dirty) for e in entries)
    for pack in packs:
        if pack.dirty:
            notes.append(f"custom_nodes/{pack.name} has local changes, which a lock cannot hold")
    guard = guard_for(cloud, session, layout, on_line)
    protected = {name: version for name, version in (await guard.snapshot()).values()}
    pip = await pip_freeze(session, layout, cloud.settings.nodes.pip_timeout)
    listed = await list_on(session.conn, layout)
    for f in listed:
        if f.partial:
            notes.append(f"models/{f.path} is an unfinished download: left out")
    listed = [f for f in listed if not f.partial]
    unhashed = [f.path for f in listed if f.sha256 is None and hash_which(f.path)]
    if unhashed:
        on_line(f"hashing {len(unhashed)} model file(s) on the instance (no sha256 recorded)")
    files = model_files(session.conn, layout)
    hashed: dict[str, str] = {}
    for path in unhashed:
        hashed[path] = await files.sha256(files.path(path))
        # Kept in the index (with the file's size and time), so the next lock does not hash
        # the file again while it stays as it is.
        await files.record(path, {"sha256": hashed[path], "hashed_at": round(cloud.clock.now(), 3)})
    models = tuple(
        ModelState(
            f.path,
            f.folder,
            f.size,
            hashed.get(f.path, f.sha256),
            f.source,
            "instance" if f.path in hashed else "index",
        )
        for f in listed
    )
    return EnvLock(comfy, packs, protected, pip, models, notes=tuple(notes))


async def lock_env(cloud: Cloud, ref: str, *, on_line: Line = quiet) -> EnvLock:
    """The lock of instance `ref`: everything `read_state` reads, with where it came from."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        on_line(f"reading the environment of {session.row.display_name}")
        state = await read_state(cloud, session, layout, on_line=on_line)
        row = session.row
    hashed = [m.path for m in state.models if m.hashed == "instance"]
    notes = list(state.notes)
    if hashed:
        notes.append(
            "hashed on the instance (no sha256 in comfyfleet's index): "
            + ", ".join(f"models/{p}" for p in hashed)
        )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cloud.clock.now()))
    instance = {"name": row.name, "vast_id": row.vast_id, "gpu": row.gpu_name}
    return EnvLock(
        state.comfyui,
        state.custom_nodes,
        state.protected,
        state.pip,
        state.models,
        instance,
        stamp,
        tuple(notes),
    )


def save_lock(lock: EnvLock, path: Path) -> None:
    """Write the lock file (a temporary file renamed over `path`: never half written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(lock.dumps(), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(
            f"cannot write the lock file {path}: {exc.strerror or exc}",
            hint="check the folder exists and is writable",
        ) from exc


def load_lock(path: Path) -> EnvLock:
    """Read and check a lock file (UsageError naming the file and what is wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(
            f"lock file {path} does not exist",
            hint="write one with: comfyfleet env lock ID -o FILE",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"lock file {path} cannot be read: {exc}") from exc
    return parse_lock(text, str(path))
