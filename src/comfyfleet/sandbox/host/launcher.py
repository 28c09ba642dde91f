"""Start a host in its own process (`start_host`) and hold it (`HostProcess`).

The host process is a session leader (its own process group); it writes its endpoints file
once SSH and the proxy listen, and ends with the launcher if the launcher dies. `stop()`
sends SIGTERM (the host stops ComfyUI and every SSH session), then SIGKILL to whatever is
left of the host's and ComfyUI's process groups.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import comfyfleet
from comfyfleet.errors import SandboxError
from comfyfleet.sandbox.host.layout import HostLayout
from comfyfleet.sandbox.host.spec import (
    ENDPOINTS_FILE,
    SPEC_FILE,
    Endpoints,
    HostSpec,
    write_private,
)
from comfyfleet.util.processes import pid_alive

STOP_TIMEOUT = 15.0


def start_host(spec: HostSpec, *, cache_dir: Path | None = None) -> HostProcess:
    """Spawn `python -m comfyfleet.sandbox.host` for `spec`; returns at once (see wait_ready).

    One host per root: SandboxError if a host already runs there.
    """
    root = spec.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    # The host runs in its root: relative paths in the spec would point elsewhere there.
    spec = dataclasses.replace(
        spec, root=root, authorized_keys_file=spec.authorized_keys_file.resolve()
    )
    running = HostProcess.attach(root)
    if running is not None:
        raise SandboxError(
            f"a sandbox host (pid {running.pid}) already runs for {root}",
            hint="stop it first, or attach to it with HostProcess.attach",
        )
    (root / ENDPOINTS_FILE).unlink(missing_ok=True)
    spec_path = root / SPEC_FILE
    write_private(spec_path, spec.to_json())
    layout = HostLayout(root)
    layout.host_log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "comfyfleet.sandbox.host",
        "--spec",
        str(spec_path),
        "--parent-pid",
        str(os.getpid()),
    ]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    env = dict(os.environ)
    package_parent = str(Path(comfyfleet.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with layout.host_log.open("ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    return HostProcess(root, popen)


class HostProcess:
    """A running host: its pid, its ports (from its endpoints file), stop, and the knobs."""

    def __init__(
        self, root: Path, popen: subprocess.Popen[bytes] | None = None, pid: int | None = None
    ) -> None:
        self.root = root
        self._popen = popen
        self._pid = popen.pid if popen is not None else pid
        if self._pid is None:
            raise SandboxError("a HostProcess needs a process or a pid")

    @classmethod
    def attach(cls, root: Path) -> HostProcess | None:
        """The host already running for `root` (after a launcher restart), or None."""
        endpoints = Endpoints.read(root.resolve())
        if endpoints is None or not pid_alive(endpoints.pid):
            return None
        return cls(root.resolve(), pid=endpoints.pid)

    # --- identity and ports ------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self._pid is not None
        return self._pid

    def endpoints(self) -> Endpoints:
        """The current endpoints (re-read: a knob may have moved SSH)."""
        endpoints = Endpoints.read(self.root)
        if endpoints is None or endpoints.pid != self.pid:
            raise SandboxError(
                f"host {self.root} is not listening yet", hint="call wait_ready() first"
            )
        return endpoints

    @property
    def ssh_port(self) -> int:
        return self.endpoints().ssh_port

    @property
    def proxy_port(self) -> int:
        return self.endpoints().proxy_port

    @property
    def comfy_port(self) -> int:
        return self.endpoints().comfy_port

    @property
    def control_url(self) -> str:
        return self.endpoints().control_url

    @property
    def host_key_fingerprint(self) -> str:
        return self.endpoints().host_key_fingerprint

    # --- lifecycle ---------------------------------------------------------------------------

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid)

    def wait_ready(self, timeout: float) -> None:
        """Block until SSH and the proxy accept connections; SandboxError if the host died."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise SandboxError(
                    f"sandbox host for {self.root} exited during start",
                    hint=f"see {HostLayout(self.root).host_log}:\n{self._log_tail()}",
                )
            endpoints = Endpoints.read(self.root)
            if (
                endpoints is not None
                and endpoints.pid == self.pid
                and _accepts(endpoints.ssh_port)
                and _accepts(endpoints.proxy_port)
            ):
                return
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"sandbox host for {self.root} not ready after {timeout:g} s",
                    hint=self._log_tail(),
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the host and everything it started; safe to call twice."""
        comfy_pid = self._comfy_pid()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            self._wait_exit(STOP_TIMEOUT)
        for pgid in (self.pid, comfy_pid):
            if pgid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        self._wait_exit(5.0)

    def _wait_exit(self, timeout: float) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _comfy_pid(self) -> int | None:
        if not self.alive():
            return None
        with contextlib.suppress(SandboxError, OSError, ValueError, KeyError, TypeError):
            comfy = self._control("GET", "/status", timeout=2).get("comfyui") or {}
            return int(comfy["pid"]) if comfy.get("pid") else None
        return None

    def _log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return HostLayout(self.root).host_log.read_text(errors="replace")[-size:]
        return ""

    # --- knobs -------------------------------------------------------------------------------

    def _control(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 90.0
    ) -> dict[str, Any]:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(
            self.control_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SandboxError(f"host control endpoint failed on {path}: {exc}") from exc

    def status(self) -> dict[str, Any]:
        """The host's view: ports, SSH state, provisioning, ComfyUI's program state and pid."""
        return self._control("GET", "/status")

    def add_gpu_process(self, pid: int, name: str, used_mib: int) -> None:
        """Show process `pid` in nvidia-smi as holding `used_mib` of GPU 0 while it runs."""
        self._control("POST", "/gpu/processes", {"pid": pid, "name": name, "used_mib": used_mib})

    def set_disk_free(self, free_bytes: int | None) -> None:
        """Make `df` on the instance show at most `free_bytes` free (None: the real value)."""
        self._control("POST", "/disk", {"leave_free": free_bytes})

    def drop_ssh(self) -> int:
        """Cut every SSH connection now; returns how many were cut."""
        return int(self._control("POST", "/ssh/drop")["dropped"])

    def refuse_ssh(self, seconds: float) -> None:
        """Refuse new SSH connections for `seconds` of simulated time (the port stays the same)."""
        self._control("POST", "/ssh/refuse", {"seconds": seconds})

    def move_ssh(self) -> int:
        """Restart SSH on a new port (connections drop); returns the new port."""
        return int(self._control("POST", "/ssh/move")["ssh_port"])

    def rotate_host_key(self) -> str:
        """Give the host a new SSH host key; returns its SHA256 fingerprint."""
        return str(self._control("POST", "/ssh/rotate-host-key")["fingerprint"])

    def restart_comfy(self) -> dict[str, Any]:
        """`supervisorctl restart comfyui`, from outside."""
        return self._control("POST", "/programs/comfyui/restart")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
