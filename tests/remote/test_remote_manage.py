"""Managing instances: GPUs, disks, processes, logs, restart (supervisor and fallback), venv pip."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

import httpx
import pytest
from tests.remote.opensshd import OpenSshd, free_port
from tests.remote.plainkit import make_plain_comfy, stats, stop_pid
from tests.sandbox_host.hostkit import RunningHost

from comfyfleet.errors import LayoutNotDetected, RemoteTimeout
from comfyfleet.remote.commands import run
from comfyfleet.remote.host_facts import host_facts, parse_meminfo
from comfyfleet.remote.layout import LayoutOverrides, detect_layout
from comfyfleet.remote.manage import (
    disk_usage,
    follow_log,
    gpu_status,
    pip,
    pip_command,
    processes,
    restart_comfy,
    tail_log,
)
from comfyfleet.remote.parsing import parse_df, parse_gpus, parse_ps
from comfyfleet.remote.ssh import connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.sandbox.host.gpus import gpu_model
from comfyfleet.util.clock import SystemClock

CLOCK = SystemClock()


def comfy_pid(host: RunningHost) -> int:
    return int(host.process.status()["comfyui"]["pid"])


async def comfy_answers(port: int) -> bool:
    async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/system_stats")).status_code == 200
        except httpx.HTTPError:
            return False


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_gpu_status_of_a_sandbox_host(
    sandbox: RunningHost, sandbox_target: SshTarget
) -> None:
    await wait_for(lambda: comfy_answers(sandbox.process.comfy_port))
    async with connect(sandbox_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn)
        gpus = await gpu_status(conn, layout)
    model = gpu_model(sandbox.spec.gpu_name)
    assert [g.index for g in gpus] == list(range(sandbox.spec.num_gpus))
    gpu = gpus[0]
    assert (gpu.name, gpu.memory_total_mib) == (model.name, model.memory_mib)
    assert gpu.uuid.startswith("GPU-") and gpu.temperature_c is not None
    assert gpu.utilization_pct == 0  # idle
    assert gpu.memory_used_mib is not None and 0 < gpu.memory_used_mib < model.memory_mib
    assert [(p.pid, p.is_comfy) for p in gpu.processes] == [(comfy_pid(sandbox), True)]
    assert gpu.processes[0].used_mib


def test_nvidia_smi_parsing() -> None:
    gpus = parse_gpus(
        "0, GPU-aaa, 98, 7850, 24564, 67, NVIDIA GeForce RTX 4090\n"
        "1, GPU-bbb, [N/A], [N/A], 81559, [Not Supported], NVIDIA H100 80GB HBM3, rev B\n",
        "GPU-aaa, 4242, 7800, /venv/main/bin/python\n"
        "GPU-aaa, 4343, [N/A], /usr/bin/some tool, with comma\n"
        "GPU-bbb, notapid, 1, x\n",
        frozenset({4242}),
    )
    first, second = gpus
    assert (first.utilization_pct, first.memory_used_mib, first.temperature_c) == (98, 7850, 67)
    assert [(p.pid, p.name, p.used_mib, p.is_comfy) for p in first.processes] == [
        (4242, "/venv/main/bin/python", 7800, True),
        (4343, "/usr/bin/some tool, with comma", None, False),
    ]
    assert second.name == "NVIDIA H100 80GB HBM3, rev B"
    assert (second.utilization_pct, second.temperature_c, second.processes) == (None, None, ())


@pytest.mark.parametrize("peer", ["sandbox", "sshd"])
async def test_disk_usage_matches_the_file_system(
    peer: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target: SshTarget = request.getfixturevalue(f"{peer}_target")
    odd = tmp_path / "a dir; $(x)"
    odd.mkdir()
    async with connect(target, clock=CLOCK) as conn:
        usage = await disk_usage(conn, [PurePosixPath(odd), "/no/such/path"])
    assert usage["/no/such/path"] is None
    got = usage[str(odd)]
    assert got is not None and got.path == str(odd)
    vfs = os.statvfs(odd)  # the peer runs on this machine: the same file system
    assert got.total_bytes == vfs.f_blocks * vfs.f_frsize // 1024 * 1024
    assert abs(got.available_bytes - vfs.f_bavail * vfs.f_frsize) < 64 * 1024 * 1024
    assert 0 <= got.used_pct <= 100 and got.mounted_on.startswith("/")


def test_df_and_ps_parsing() -> None:
    df = (
        "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
        "overlay          209612800 52403200 157209600      25% /mnt/my disk\n"
    )
    usage = parse_df("/workspace", df)
    assert usage is not None
    assert (usage.total_bytes, usage.used_pct, usage.mounted_on) == (
        209612800 * 1024,
        25,
        "/mnt/my disk",
    )
    assert parse_df("/x", "df: /x: No such file or directory\n") is None
    ps = (
        "    1     0 root      0.0  0.0  1024    01:02:03 /sbin/init\n"
        "  812     1 root     97.5 12.1 3145728 1-02:03:04 /venv/main/bin/python main.py "
        "--port 18188\n"
        "  900     1 root      0.1  0.0  2048       00:05 python3 /opt/other/app.py main.py\n"
        "garbage line\n"
    )
    procs = parse_ps(ps, PurePosixPath("/workspace/ComfyUI"))
    assert [(p.pid, p.is_comfy) for p in procs] == [(1, False), (812, True), (900, False)]
    assert procs[1].command == "/venv/main/bin/python main.py --port 18188"
    assert (procs[1].cpu_pct, procs[1].rss_kib, procs[1].elapsed) == (97.5, 3145728, "1-02:03:04")


@pytest.mark.parametrize("peer", ["sandbox", "sshd"])
async def test_host_memory_is_read_within_the_cgroup(
    peer: str, request: pytest.FixtureRequest
) -> None:
    target: SshTarget = request.getfixturevalue(f"{peer}_target")
    async with connect(target, clock=CLOCK) as conn:
        facts = await host_facts(conn)
    assert facts.memory is not None
    # The peer runs on this machine: what the kernel and this machine's cgroup say.
    machine = parse_meminfo(Path("/proc/meminfo").read_text())
    assert machine is not None and facts.memory.total <= machine.total
    limit = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    unlimited = not limit.exists() or int(limit.read_text()) >= machine.total
    if unlimited and not Path("/sys/fs/cgroup/memory.max").exists():
        assert facts.memory.total == machine.total and not facts.memory.limited
    assert 0 < facts.memory.available <= facts.memory.total


async def test_processes_mark_comfyui(sandbox: RunningHost, sandbox_target: SshTarget) -> None:
    await wait_for(lambda: comfy_answers(sandbox.process.comfy_port))
    async with connect(sandbox_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn)
        procs = {p.pid: p for p in await processes(conn, layout)}
    assert procs[comfy_pid(sandbox)].is_comfy
    assert not procs[os.getpid()].is_comfy


async def test_logs_tail_and_follow_across_a_supervisor_restart(
    sandbox: RunningHost, sandbox_target: SshTarget
) -> None:
    await wait_for(lambda: comfy_answers(sandbox.process.comfy_port))
    async with connect(sandbox_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn)
        assert layout.log_file is not None
        local_log = Path(layout.log_file)
        expected = local_log.read_text().splitlines(keepends=True)[-3:]
        assert (await tail_log(conn, layout, 3)).splitlines(keepends=True) == expected

        seen: list[str] = []
        follower = asyncio.ensure_future(follow_log(conn, layout, seen.append, lines=0))
        try:
            await asyncio.sleep(0.5)
            with local_log.open("a") as fh:
                fh.write("a line ComfyUI wrote\n")
            await wait_for(lambda: _has(seen, "a line ComfyUI wrote"), 10)
            old_pid = comfy_pid(sandbox)
            took = await restart_comfy(
                conn, layout, lambda: comfy_answers(layout.comfy_port), clock=CLOCK, interval=0.1
            )
            assert took > 0 and comfy_pid(sandbox) != old_pid
            assert local_log.with_name("comfyui.log.old").exists()  # the old log was renamed
            await wait_for(lambda: _has(seen, "To see the GUI go to"), 10)  # the new file
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def _has(lines: list[str], text: str) -> bool:
    return any(text in line for line in lines)


async def test_fallback_restart_on_a_plain_install(
    sshd: OpenSshd, sshd_target: SshTarget, tmp_path: Path
) -> None:
    comfy = make_plain_comfy(tmp_path / "ComfyUI")
    bystander = make_plain_comfy(tmp_path / "other" / "ComfyUI")  # must survive the restart
    port, other_port = free_port(), free_port()
    started: list[int] = []
    async with connect(sshd_target, clock=CLOCK) as conn:
        layout = await detect_layout(
            conn, LayoutOverrides(comfy_dir=PurePosixPath(comfy), comfy_port=port)
        )
        assert not layout.restarts_with_supervisor
        other = await detect_layout(
            conn, LayoutOverrides(comfy_dir=PurePosixPath(bystander), comfy_port=other_port)
        )
        try:
            for layout_ in (other, layout, layout):
                ready = layout_.comfy_port
                await restart_comfy(
                    conn, layout_, lambda p=ready: comfy_answers(p), clock=CLOCK, interval=0.1
                )
                info = await asyncio.to_thread(stats, ready)
                assert info is not None
                started.append(int(str(info["pid"])))
            bystander_pid, first, second = started
            assert first != second
            await wait_for(lambda: _gone(first), 10)
            info = await asyncio.to_thread(stats, other_port)
            assert info is not None and info["pid"] == bystander_pid
            assert info["argv"] == ["main.py", "--port", str(other_port)]
            log = (comfy / "comfyui.log").read_text()
            assert log.count("To see the GUI go to") == 2
        finally:
            for pid in started:
                stop_pid(pid)


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return True
    return state == "Z"


async def test_restart_times_out_when_comfy_never_answers(
    sshd: OpenSshd, sshd_target: SshTarget, tmp_path: Path
) -> None:
    comfy = make_plain_comfy(tmp_path / "ComfyUI")
    async with connect(sshd_target, clock=CLOCK) as conn:
        layout = await detect_layout(
            conn,
            LayoutOverrides(
                comfy_dir=PurePosixPath(comfy),
                restart_command="true",
                log_file=PurePosixPath(comfy / "comfyui.log"),
            ),
        )

        async def never() -> bool:
            return False

        with pytest.raises(RemoteTimeout) as caught:
            await restart_comfy(conn, layout, never, clock=CLOCK, timeout=0.3, interval=0.05)
    assert "comfyui.log" in str(caught.value)


async def test_pip_is_the_venvs_never_the_system_one(
    sandbox: RunningHost, sandbox_target: SshTarget
) -> None:
    out: list[str] = []
    async with connect(sandbox_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn)
        code = await pip(conn, layout, ["install", "opencv-python-headless"], out.append,
                         out.append)  # fmt: skip
        assert code == 0, "".join(out)
        assert any("Successfully installed opencv-python-headless" in line for line in out)
        venv_import = await run(conn, f"{layout.python} -c 'import cv2'")
        system_import = await run(conn, "python3 -c 'import cv2'")  # the PATH python
        which_pip = await run(conn, "command -v pip")
    assert venv_import.exit_code == 0
    assert system_import.exit_code == 1  # it went into the venv, not the system Python
    assert which_pip.stdout.strip() != f"{layout.venv}/bin/pip"  # PATH's pip is another one
    assert pip_command(layout, ["list"]).argv == (f"{layout.venv}/bin/python", "-m", "pip",
                                                  "list")  # fmt: skip


def test_pip_refuses_without_a_venv() -> None:
    from tests.remote.test_remote_layout import facts

    from comfyfleet.remote.layout import decide

    with pytest.raises(LayoutNotDetected):
        pip_command(decide(facts()), ["install", "x"])
