"""The host's `comfyui` program, run the way supervisord runs it on Vast's image.

Each start is one run of the image's start script: rename the old log to `comfyui.log.old`,
wait while provisioning is in progress ("startup paused…"), then run ComfyUI with the venv's
python and `$COMFYUI_ARGS` (a value in `${WORKSPACE}/.env` wins, read at every start as the
image's scripts do), its output appended to `/var/log/portal/comfyui.log`. Supervisor
settings as on the image: startsecs=5, stopwaitsecs=10, autorestart=true, startretries=3
(simulated seconds). ComfyUI gets its own process group, so stopping it stops whatever it
spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from comfyfleet.sandbox.host.layout import HostLayout
from comfyfleet.util.clock import Clock

START_SECS = 5.0
STOP_WAIT_SECS = 10.0
START_RETRIES = 3
PAUSED = "startup paused until instance provisioning has completed"


@dataclass(frozen=True)
class ProgramStatus:
    """`supervisorctl status` for one program."""

    name: str
    state: str  # STOPPED STARTING RUNNING BACKOFF STOPPING EXITED FATAL
    pid: int | None
    uptime: float  # real seconds in the current state (RUNNING: since the process started)
    description: str

    def line(self) -> str:
        if self.state == "RUNNING" and self.pid is not None:
            secs = int(self.uptime)
            desc = f"pid {self.pid}, uptime {secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"
        else:
            desc = self.description
        return f"{self.name:<33}{self.state:<10}{desc}".rstrip()


class ProvisioningGate:
    """Open once provisioning is done; provisioning runs on the first boot of a root only."""

    def __init__(self, layout: HostLayout, clock: Clock, seconds: float) -> None:
        self.layout = layout
        self.clock = clock
        self.seconds = seconds
        self.opened = asyncio.Event()

    @property
    def in_progress(self) -> bool:
        return not self.opened.is_set()

    async def run(self) -> None:
        layout = self.layout
        if layout.provisioned_marker.exists():
            layout.provisioning_marker.unlink(missing_ok=True)
            self.opened.set()
            return
        layout.provisioning_marker.touch()
        with layout.provisioning_log.open("a") as log:
            log.write(f"{_stamp()} provisioning started ({self.seconds:g} s)\n")
        await self.clock.sleep(self.seconds)
        with layout.provisioning_log.open("a") as log:
            log.write(f"{_stamp()} provisioning complete\n")
        layout.provisioned_marker.touch()
        layout.provisioning_marker.unlink(missing_ok=True)
        self.opened.set()


class ComfyProgram:
    """Start, stop and watch the ComfyUI process of one host."""

    name = "comfyui"

    def __init__(
        self,
        layout: HostLayout,
        clock: Clock,
        gate: ProvisioningGate,
        argv: list[str],
        env: dict[str, str],
        argv_for: Callable[[Mapping[str, str]], list[str]] | None = None,
    ) -> None:
        self.layout = layout
        self.clock = clock
        self.gate = gate
        self.argv = argv  # the command, without the log redirection
        self.env = env
        self.argv_for = argv_for  # the command for a start's environment (else `argv`)
        self.state = "STOPPED"
        self.description = "Not started"
        self.proc: asyncio.subprocess.Process | None = None
        self._since = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._settled = asyncio.Event()  # set whenever a start attempt has an outcome

    # --- status ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        if self.proc is not None and self.proc.returncode is None:
            return self.proc.pid
        return None

    def status(self) -> ProgramStatus:
        return ProgramStatus(
            self.name, self.state, self.pid, time.monotonic() - self._since, self.description
        )

    def _set(self, state: str, description: str = "") -> None:
        self.state = state
        self.description = description
        self._since = time.monotonic()

    def stop_requested(self) -> bool:
        return self._stopping

    # --- control -----------------------------------------------------------------------------

    def start(self) -> bool:
        """Begin a start (False if already started); `wait_settled` waits for its outcome."""
        if self._task is not None and not self._task.done():
            return False
        self._stopping = False
        self._settled.clear()
        self._task = asyncio.create_task(self._run(), name="comfyui-program")
        return True

    async def wait_settled(self, timeout: float) -> ProgramStatus:
        """Wait until RUNNING, FATAL, or paused for provisioning (supervisorctl's wait)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self.status()

    async def stop(self) -> bool:
        """Stop the program (SIGTERM its group, SIGKILL after stopwaitsecs); False if stopped."""
        task = self._task
        if task is None or task.done():
            return False
        self._stopping = True
        self._set("STOPPING")
        await self._terminate()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        self._set("STOPPED", time.strftime("%b %d %I:%M %p"))
        return True

    async def _terminate(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT_SECS / self.clock.speed + 0.5)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # anything ComfyUI left in its group

    # --- the start script --------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._rotate_log()
            with self.layout.comfy_log.open("ab") as log:
                if self.gate.in_progress:
                    self._set("STARTING", "waiting for provisioning")
                    self._settled.set()
                    log.write(f"{PAUSED}\n".encode())
                    log.flush()
                    await self.gate.opened.wait()
                self._set("STARTING")
                env = {**self.env, **self.layout.workspace_env()}
                argv = self.argv if self.argv_for is None else self.argv_for(env)
                self.proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=self.layout.comfy_dir,
                    env=env,
                    start_new_session=True,
                )
            try:
                await asyncio.wait_for(self.proc.wait(), START_SECS / self.clock.speed)
            except TimeoutError:
                failures = 0
                self._set("RUNNING")
                self._settled.set()
                code = await self.proc.wait()
                if self.stop_requested():
                    return
                self._set("EXITED", f"exit status {code}")
                continue  # autorestart
            failures += 1
            if failures > START_RETRIES:
                self._set("FATAL", "Exited too quickly (process log may have details)")
                self._settled.set()
                return
            self._set("BACKOFF", "Exited too quickly (process log may have details)")
            await self.clock.sleep(float(failures))

    def _rotate_log(self) -> None:
        log = self.layout.comfy_log
        if log.exists() and log.stat().st_size > 0:
            os.replace(log, log.with_name(log.name + ".old"))


def comfy_command(layout: HostLayout, speed: float, comfyui_args: str) -> list[str]:
    """How the image's start script runs ComfyUI: the venv's python, then `$COMFYUI_ARGS`."""
    return [
        str(layout.venv_python),
        "-m",
        "comfyfleet.sandbox.comfy",
        "--root",
        str(layout.comfy_dir),
        "--speed",
        f"{speed:g}",
        "--log",
        str(layout.comfy_log),
        *shlex.split(comfyui_args),
    ]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
