"""The sandbox cloud as a long-lived process: its state dir, start, status and stop.

State dir (default `<platform data dir>/sandbox`):

    api_key        the sandbox account's API key, generated once (0600)
    cloud.json     the simulated world (market, instances, account, billing)
    sandbox.json   written while a server runs: url, api_key, pid, speed, started_at (0600)
    sandbox.lock   held by the running server, so two servers never share a state dir
    sandbox.log    output of a detached server
    instances/     one folder per instance: the host's root and its authorized_keys

Only processes whose command line shows they are ours are ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from comfyfleet import __version__
from comfyfleet.config import Settings
from comfyfleet.errors import SandboxError
from comfyfleet.sandbox.vast import pids
from comfyfleet.sandbox.vast.hosts import HOST_MODULE
from comfyfleet.util.processes import pid_alive

STATE_FILE = "sandbox.json"
KEY_FILE = "api_key"
LOCK_FILE = "sandbox.lock"
LOG_FILE = "sandbox.log"
SERVER_MARKERS = ("comfyfleet", "sandbox")
EXIT_ALREADY_RUNNING = 3

#: Detached servers started by this process, kept so they can be reaped (no zombies) on stop.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class RunningSandbox:
    """What `sandbox.json` records about a running sandbox server."""

    url: str
    api_key: str
    pid: int
    speed: float
    started_at: float
    state_dir: str
    version: str
    hosts: bool = True

    def public(self) -> dict[str, Any]:
        return asdict(self)


def default_state_dir(settings: Settings | None = None) -> Path:
    return (settings or Settings()).data_dir() / "sandbox"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load_or_create_api_key(state_dir: Path) -> str:
    """The sandbox account's key, generated once and kept 0600 in the state dir."""
    path = state_dir / KEY_FILE
    if path.exists():
        key = path.read_text("utf-8").strip()
        if key:
            return key
    key = secrets.token_hex(32)
    _write_private(path, key + "\n")
    return key


def read_state_file(state_dir: Path) -> RunningSandbox | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text("utf-8"))
        return RunningSandbox(**data)
    except (OSError, ValueError, TypeError):
        return None


def read_running(state_dir: Path) -> RunningSandbox | None:
    """The sandbox running from `state_dir`, or None (no state file, or its process is gone)."""
    running = read_state_file(state_dir)
    if running is None or not pids.is_ours(running.pid, *SERVER_MARKERS):
        return None
    return running


@contextlib.contextmanager
def exclusive_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's lock; SandboxError if another sandbox server holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = open(state_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held for the whole run)
    try:
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise SandboxError(
                f"a sandbox is already running from {state_dir}",
                hint="comfyfleet sandbox status shows it; comfyfleet sandbox stop stops it",
            ) from exc
        yield
    finally:
        fh.close()


async def serve(
    state_dir: Path,
    *,
    port: int = 0,
    speed: float = 1.0,
    seed: int = 0,
    credit: float = 50.0,
    hosts: bool = True,
    exit_with: int | None = None,
    ready: Callable[[RunningSandbox], None] | None = None,
) -> None:
    """Run the sandbox cloud from `state_dir` until SIGINT/SIGTERM, POST /__sandbox/shutdown
    or, with `exit_with`, until that process ends (scripts and test runs that may be killed)."""
    from comfyfleet.sandbox.vast.server import SandboxVast

    with exclusive_lock(state_dir):
        api_key = load_or_create_api_key(state_dir)
        cloud = SandboxVast(
            state_dir, speed=speed, seed=seed, credit=credit, api_key=api_key, port=port,
            hosts=hosts,
        )  # fmt: skip
        await cloud.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, cloud.request_shutdown)
        running = RunningSandbox(
            url=cloud.url,
            api_key=api_key,
            pid=os.getpid(),
            speed=speed,
            started_at=time.time(),
            state_dir=str(state_dir),
            version=__version__,
            hosts=hosts,
        )
        watch = asyncio.create_task(_exit_with(exit_with, cloud.request_shutdown))
        try:
            _write_private(state_dir / STATE_FILE, json.dumps(running.public(), indent=2) + "\n")
            if ready is not None:
                ready(running)
            await cloud.wait_closed()
        finally:
            watch.cancel()
            await cloud.stop()
            recorded = read_state_file(state_dir)
            if recorded is not None and recorded.pid == os.getpid():
                (state_dir / STATE_FILE).unlink(missing_ok=True)


async def _exit_with(pid: int | None, shutdown: Callable[[], None]) -> None:
    if pid is None:
        return
    while pid_alive(pid):
        await asyncio.sleep(0.5)
    shutdown()


def start_detached(
    state_dir: Path,
    *,
    port: int = 0,
    speed: float = 1.0,
    seed: int = 0,
    credit: float = 50.0,
    hosts: bool = True,
    exit_with: int | None = None,
    timeout: float = 30.0,
) -> RunningSandbox:
    """Start the sandbox server as a background process and wait until it serves."""
    state_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "comfyfleet.sandbox.vast", "--state-dir", str(state_dir),
        "--port", str(port), "--speed", repr(float(speed)), "--seed", str(seed),
        "--credit", repr(float(credit)),
    ]  # fmt: skip
    if not hosts:
        command.append("--no-hosts")
    if exit_with is not None:
        command += ["--exit-with", str(exit_with)]
    options: dict[str, Any] = {}
    if sys.platform == "win32":
        options["creationflags"] = 0x00000008 | 0x00000200  # DETACHED, NEW_PROCESS_GROUP
    else:
        options["start_new_session"] = True
    with open(state_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **options
        )
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = read_state_file(state_dir)
        if running is not None and running.pid == proc.pid:
            return running
        if proc.poll() is not None:
            raise SandboxError(
                f"the sandbox server exited with code {proc.returncode}",
                hint=f"see {state_dir / LOG_FILE}: {_log_tail(state_dir)}",
            )
        time.sleep(0.05)
    raise SandboxError(
        f"the sandbox server did not start within {timeout:.0f} s",
        hint=f"see {state_dir / LOG_FILE}",
    )


def _log_tail(state_dir: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = (state_dir / LOG_FILE).read_text("utf-8", errors="replace").strip()
        return " | ".join(text.splitlines()[-lines:])
    return ""


def _request(running: RunningSandbox, method: str, path: str, timeout: float = 10.0) -> Any:
    req = urllib.request.Request(
        running.url + path,
        method=method,
        headers={"Authorization": f"Bearer {running.api_key}"},
        data=b"{}" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise SandboxError(f"the sandbox at {running.url} did not answer: {exc}") from exc


def server_info(running: RunningSandbox) -> dict[str, Any]:
    """`GET /__sandbox/info`: speed, simulated now, version."""
    info: dict[str, Any] = _request(running, "GET", "/__sandbox/info")
    return info


def status(running: RunningSandbox) -> dict[str, Any]:
    """What `sandbox status` shows: the record plus the server's own view of its world."""
    info = _request(running, "GET", "/__sandbox/info")
    state = _request(running, "GET", "/__sandbox/state")
    return {
        "running": True,
        **running.public(),
        "uptime": round(time.time() - running.started_at, 1),
        "sim_now": state["now"],
        "credit": state["credit"],
        "spent": state["spent"],
        "billing_per_hour": state["billing_per_hour"],
        "instances": state["instances"],
        "server_version": info["version"],
    }


def stop_running(state_dir: Path, timeout: float = 30.0) -> RunningSandbox | None:
    """Stop the sandbox (and its hosts); returns what was running, None if nothing was."""
    recorded = read_state_file(state_dir)
    running = recorded if recorded and pids.is_ours(recorded.pid, *SERVER_MARKERS) else None
    if running is not None:
        with contextlib.suppress(SandboxError):
            _request(running, "POST", "/__sandbox/shutdown", timeout=5.0)
        if not pids.wait_gone(running.pid, timeout / 2):
            pids.terminate(running.pid, *SERVER_MARKERS, timeout=timeout / 4)
        child = _children.pop(running.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
    _stop_leftover_hosts(state_dir)
    if recorded is not None and not pid_alive(recorded.pid):
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return running


def _stop_leftover_hosts(state_dir: Path) -> None:
    """Hosts recorded in cloud.json that outlived their server (it was killed)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads((state_dir / "cloud.json").read_text("utf-8"))
        for inst in data["instances"]:
            pid = inst.get("host_pid")
            root = (state_dir / "instances" / str(inst["id"]) / "root").resolve()
            if pid:
                pids.terminate(int(pid), HOST_MODULE, str(root), timeout=5.0)
