"""Managing an instance over SSH: GPUs, disks, processes, ComfyUI's log, restart, venv pip.

Each call is one SSH round trip on an open `SshConnection`; outputs are parsed into typed
values (`parsing`). `pip` is always the ComfyUI venv's (`<venv>/bin/python -m pip`), never a
`pip` found on PATH: on Vast's image a non-interactive shell's `pip` is the system one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import PurePosixPath

from comfyfleet.errors import LayoutNotDetected, RemoteCommandFailed, RemoteTimeout
from comfyfleet.remote.commands import RemoteCommand, run, stream
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.parsing import (
    APP_FIELDS,
    GPU_FIELDS,
    PS_FORMAT,
    DiskUsage,
    GpuInfo,
    ProcessInfo,
    parse_df,
    parse_gpus,
    parse_ps,
    split_sections,
)
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.util.clock import Clock

_MARK = "@@comfyfleet-section@@"
_FORMAT = "--format=csv,noheader,nounits"


async def gpu_status(conn: SshConnection, layout: InstanceLayout | None = None) -> list[GpuInfo]:
    """Every GPU with its utilization, memory, temperature and compute processes."""
    script = " && ".join(
        [
            f"nvidia-smi --query-gpu={GPU_FIELDS} {_FORMAT}",
            f"echo {_MARK}",
            f"nvidia-smi --query-compute-apps={APP_FIELDS} {_FORMAT}",
            f"echo {_MARK}",
            f"ps -eo {PS_FORMAT}",
        ]
    )
    done = await run(conn, script)
    if done.exit_code == 127:
        raise RemoteCommandFailed(
            f"nvidia-smi is not installed on {conn.target.describe()}",
            exit_code=127,
            command="nvidia-smi",
            stderr_tail=done.stderr,
            hint="the instance has no NVIDIA driver (a CPU-only machine or a broken image)",
        )
    done.check()
    gpus, apps, ps = split_sections(done.stdout, _MARK, 3)
    comfy = layout.comfy_dir if layout else None
    comfy_pids = frozenset(p.pid for p in parse_ps(ps, comfy) if p.is_comfy)
    return parse_gpus(gpus, apps, comfy_pids)


async def disk_usage(
    conn: SshConnection, paths: Sequence[PurePosixPath | str]
) -> dict[str, DiskUsage | None]:
    """`df -P` of each path (None for a path that does not exist), in one round trip."""
    script = f'for p in "$@"; do echo {_MARK}; df -P -k -- "$p" 2>/dev/null; done'
    cmd = RemoteCommand.of("sh", "-c", script, "df", *[str(p) for p in paths])
    done = await run(conn, cmd)
    sections = split_sections(done.stdout, _MARK, len(paths) + 1)[1:]
    return {str(p): parse_df(str(p), text) for p, text in zip(paths, sections, strict=True)}


async def processes(conn: SshConnection, layout: InstanceLayout | None = None) -> list[ProcessInfo]:
    """The instance's processes (`ps -e`), ComfyUI's marked with `is_comfy`."""
    done = (await run(conn, f"ps -eo {PS_FORMAT}")).check()
    return parse_ps(done.stdout, layout.comfy_dir if layout else None)


def _log_file(conn: SshConnection, layout: InstanceLayout) -> PurePosixPath:
    if layout.log_file is None:
        raise LayoutNotDetected(
            f"no ComfyUI log file is known on {conn.target.describe()}",
            hint="give its path with --log-file",
        )
    return layout.log_file


async def tail_log(conn: SshConnection, layout: InstanceLayout, lines: int = 100) -> str:
    """The last `lines` lines of ComfyUI's log."""
    cmd = RemoteCommand.of("tail", "-n", max(0, lines), "--", _log_file(conn, layout))
    return (await run(conn, cmd, check=True)).stdout


async def follow_log(
    conn: SshConnection,
    layout: InstanceLayout,
    on_line: Callable[[str], None],
    lines: int = 10,
) -> int:
    """Stream ComfyUI's log as it grows (`tail -F`: it follows the file across restarts,
    which rename the old log); runs until cancelled, returns tail's exit code if it ends."""
    cmd = RemoteCommand.of("tail", "-n", max(0, lines), "-F", "--", _log_file(conn, layout))
    return await stream(conn, cmd, on_line, lambda _text: None)


async def restart_comfy(
    conn: SshConnection,
    layout: InstanceLayout,
    wait_ready: Callable[[], Awaitable[bool]],
    *,
    clock: Clock,
    timeout: float = 300.0,
    interval: float = 1.0,
) -> float:
    """Restart ComfyUI and return once `wait_ready()` is True; returns the seconds it took.

    `wait_ready` is the caller's readiness probe (ComfyUI answering through a tunnel).
    RemoteTimeout when it does not answer within `timeout` seconds (clock time).
    """
    if layout.restart_command is None:
        raise LayoutNotDetected(
            f"no way to restart ComfyUI is known on {conn.target.describe()}",
            hint="give the venv with --venv, or the command with --restart-command",
        )
    started = clock.monotonic()
    await run(conn, layout.restart_command, timeout=timeout, check=True)
    while True:
        if await wait_ready():
            return clock.monotonic() - started
        if clock.monotonic() - started > timeout:
            where = f"; see its log: {layout.log_file}" if layout.log_file else ""
            raise RemoteTimeout(
                f"ComfyUI on {conn.target.describe()} did not answer within {timeout:g} s "
                f"of its restart{where}"
            )
        await clock.sleep(interval)


def pip_command(layout: InstanceLayout, args: Sequence[str]) -> RemoteCommand:
    """`<venv>/bin/python -m pip ARGS` (LayoutNotDetected without a venv)."""
    if not layout.pip:
        raise LayoutNotDetected(
            "no ComfyUI venv was found on the instance: refusing to run a global pip",
            hint="give the venv with --venv",
        )
    return RemoteCommand.of(*layout.pip, *args)


async def pip(
    conn: SshConnection,
    layout: InstanceLayout,
    args: Sequence[str],
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
) -> int:
    """Run the ComfyUI venv's pip with `args`, streaming its output; returns pip's exit code."""
    return await stream(conn, pip_command(layout, args), on_stdout, on_stderr)
