"""The doctor on a rented sandbox instance: each check seen failing, then fixed (by `--fix`
where the fix is safe, by hand where it is not), over the real SSH and HTTP of the host."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys

import pytest
from tests.doctor.boxkit import Box, chain, pack_importing

from comfyfleet.control.doctor_model import Check, FixKind, Status
from comfyfleet.sandbox.host import HostProcess
from comfyfleet.services import instance_ops
from comfyfleet.services.doctor import DoctorReport

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


def checks(report: DoctorReport) -> dict[str, Check]:
    return {c.name: c for c in report.checks}


def statuses(report: DoctorReport) -> dict[str, str]:
    return {c.name: c.status.value for c in report.checks}


async def versions(box: Box, *names: str) -> dict[str, str | None]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n        return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n"
    )
    done = await box.sh(f"{box.venv_bin}/python -c '{code}' {' '.join(names)}")
    result: dict[str, str | None] = json.loads(done.stdout)
    return result


async def test_a_healthy_instance_passes_every_check(box: Box) -> None:
    report = await box.doctor()
    assert report.mode == "instance" and report.status is Status.OK
    assert set(statuses(report).values()) == {"ok"}, statuses(report)
    got = checks(report)
    assert got["torch-cuda"].summary.startswith("torch 2.8.0+cu128 (CUDA 12.8) sees NVIDIA")
    assert any(line.startswith("Vast: cuda_max_good") for line in got["torch-cuda"].evidence)
    assert got["frontend"].summary == "frontend 1.27.10 (requires 1.27.10)"
    assert "xformers 0.0.32" in got["accelerators"].summary
    assert got["queue"].summary == "the queue is empty"
    assert report.before is None and report.fixes == []


async def test_a_stray_gpu_process_is_a_warning_whose_fix_works(box: Box) -> None:
    # A forgotten training run holds GPU memory on the instance (the host runs on this machine).
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        host = HostProcess.attach(box.root)
        assert host is not None
        host.add_gpu_process(stray.pid, "python train_lora.py", 6144)
        report = await box.doctor()
        got = checks(report)["gpu-memory"]
        assert got.status is Status.WARN and report.status is Status.WARN
        assert f"GPU 0: pid {stray.pid} (python train_lora.py) holds 6144 MiB" in got.evidence
        assert got.fix is not None and got.fix.kind is None  # never applied by --fix
        command = got.fix.text.split(": ", 1)[1]
        assert command == f"comfyfleet exec box -- kill {stray.pid}"
        # The fix, as the user runs it: through `comfyfleet exec` on the instance.
        assert (
            await instance_ops.exec_command(box.cloud, box.ref, f"kill {stray.pid}", print, print)
            == 0
        )
        stray.wait(timeout=30)
        after = checks(await box.doctor())["gpu-memory"]
        assert after.status is Status.OK and after.summary == "only ComfyUI holds GPU memory"
    finally:
        stray.kill()
        stray.wait()


async def test_a_nearly_full_disk_fails_and_its_fix_command_runs(box: Box) -> None:
    host = HostProcess.attach(box.root)
    assert host is not None
    host.set_disk_free(1024**3)  # df on the instance shows 1 GiB free
    try:
        report = await box.doctor()
        got = checks(report)["disk"]
        assert got.status is Status.FAIL and report.status is Status.FAIL
        assert got.summary.startswith("least free: 1.0 GiB")
        assert got.fix is not None and got.fix.kind is None  # freeing space is the user's call
        assert "a Vast disk cannot grow" in got.fix.text
        # The fix's command as a local shell splits it, then as `comfyfleet exec` runs it.
        command = "comfyfleet exec" + got.fix.text.split("comfyfleet exec", 1)[1].split(")")[0]
        words = shlex.split(command)
        assert words[:4] == ["comfyfleet", "exec", "box", "--"]
        seen: list[str] = []
        code = await instance_ops.exec_command(
            box.cloud, box.ref, " ".join(words[4:]), seen.append, print
        )
        assert code == 0 and "models/checkpoints" in "".join(seen)
    finally:
        host.set_disk_free(None)
    assert checks(await box.doctor())["disk"].status is Status.OK


async def test_a_package_only_the_system_pip_installed_is_put_into_the_venv(box: Box) -> None:
    # The classic: `pip install onnx` in a shell reaches the system Python, not ComfyUI's venv.
    await box.sh("pip install onnx")
    box.add_pack("onnx_nodes", pack_importing("onnx", "OnnxEcho"))
    await box.restart()
    fixed = await box.doctor(fix=True)
    assert fixed.before is not None  # the first examination, before the fixes
    got = {c.name: c for c in fixed.before}
    assert got["custom-nodes"].status is Status.FAIL
    assert got["custom-nodes"].evidence == (
        "onnx_nodes: No module named 'onnx' [missing module: onnx]",
    )
    venv = got["venv-packages"]
    assert venv.status is Status.FAIL and venv.fix is not None
    assert (venv.fix.kind, venv.fix.packages) == (FixKind.VENV_INSTALL, ("onnx==1.19.0",))
    assert str(box.root / "usr" / "bin" / "python3") in venv.evidence[0]

    applied = {f.action: f for f in fixed.fixes}
    assert applied["venv-install"].applied, applied
    assert "onnx==1.19.0" in applied["venv-install"].outcome
    assert "torch==2.8.0+cu128" in applied["venv-install"].outcome  # pinned while installing
    assert applied["restart"].applied, applied
    assert statuses(fixed)["custom-nodes"] == statuses(fixed)["venv-packages"] == "ok"
    assert fixed.status is Status.OK
    async with box.client() as client:
        assert "OnnxEcho" in await client.object_info(refresh=True)
    assert await versions(box, "onnx", "torch") == {"onnx": "1.19.0", "torch": "2.8.0+cu128"}


async def test_an_xformers_built_for_another_torch_is_removed_never_torch(box: Box) -> None:
    await box.venv_pip("install", "--no-deps", "xformers==0.0.33")
    fixed = await box.doctor(fix=True)
    assert fixed.before is not None
    got = {c.name: c for c in fixed.before}
    accel = got["accelerators"]
    assert accel.status is Status.FAIL and accel.fix is not None
    assert accel.evidence == (
        "xformers 0.0.33 requires torch==2.9.0, but torch 2.8.0+cu128 is installed",
    )
    assert (accel.fix.kind, accel.fix.packages) == (FixKind.VENV_UNINSTALL, ("xformers",))
    assert got["pip-check"].status is Status.WARN
    assert any("xformers 0.0.33" in line for line in got["pip-check"].evidence)

    applied = {f.action: f for f in fixed.fixes}
    assert applied["venv-uninstall"].applied and applied["restart"].applied, applied
    assert statuses(fixed)["accelerators"] == statuses(fixed)["pip-check"] == "ok"
    assert checks(fixed)["accelerators"].summary == "no optional accelerator installed"
    assert await versions(box, "xformers", "torch") == {"xformers": None, "torch": "2.8.0+cu128"}


async def test_an_old_frontend_is_a_warning_whose_pip_command_fixes_it(box: Box) -> None:
    await box.venv_pip("install", "comfyui-frontend-package==1.26.13")
    try:
        got = checks(await box.doctor())["frontend"]
        assert got.status is Status.WARN
        assert got.summary == "frontend 1.26.13 is older than the 1.27.10 ComfyUI requires"
        assert got.fix is not None and got.fix.kind is None
        words = shlex.split(got.fix.text)  # the command as the user's shell splits it
        assert words[:4] == ["comfyfleet", "pip", "box", "--"]
        code = await instance_ops.pip(box.cloud, box.ref, words[4:], print, print)
        assert code == 0
        assert checks(await box.doctor())["frontend"].status is Status.OK
    finally:
        await box.venv_pip("install", "comfyui-frontend-package==1.27.10")


async def test_broken_node_packs_are_reported_then_fixed_by_hand(box: Box) -> None:
    box.add_pack("broken_pack", "raise RuntimeError('this pack is broken')\n")
    box.add_pack("needs_nothing_known", pack_importing("no_such_module_anywhere", "Nowhere"))
    await box.restart()
    report = await box.doctor(fix=True)
    got = checks(report)
    nodes = got["custom-nodes"]
    assert nodes.status is Status.FAIL and nodes.fix is not None and not nodes.fix.auto
    assert sorted(nodes.evidence) == [
        "broken_pack: this pack is broken",
        "needs_nothing_known: No module named 'no_such_module_anywhere' "
        "[missing module: no_such_module_anywhere]",
    ]
    assert "comfyfleet logs box" in nodes.fix.text
    assert got["venv-packages"].status is Status.OK  # no other Python has it either
    assert report.before is None and report.fixes == []  # nothing safe to apply
    # The user disables both packs; after a restart ComfyUI imports what is left.
    for name in ("broken_pack", "needs_nothing_known"):
        folder = box.comfy_dir / "custom_nodes" / name
        folder.rename(folder.with_name(name + ".disabled"))
    await box.restart()
    assert statuses(await box.doctor())["custom-nodes"] == "ok"


async def test_a_cpu_torch_is_reported_and_never_touched(box: Box) -> None:
    await box.venv_pip("install", "--no-deps", "torch==2.9.0+cpu")
    report = await box.doctor(fix=True)
    torch = checks(report)["torch-cuda"]
    assert torch.status is Status.FAIL and torch.fix is not None and not torch.fix.auto
    assert torch.summary == "torch 2.9.0+cpu is a CPU build: ComfyUI cannot use the GPU"
    assert "torch==2.9.0+cu128" in torch.fix.text
    assert await versions(box, "torch") == {"torch": "2.9.0+cpu"}  # --fix left torch alone
    await box.venv_pip("install", "--no-deps", "torch==2.8.0+cu128")
    assert statuses(await box.doctor())["torch-cuda"] == "ok"


async def wait_running(box: Box, prompt_id: str) -> None:
    async with box.client() as client:
        for _ in range(300):
            if prompt_id in [i.prompt_id for i in (await client.queue()).running]:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{prompt_id} never started")


async def test_a_hung_node_with_a_busy_gpu_is_a_warning_not_repaired_by_fix(box: Box) -> None:
    await box.knobs({"hang": ["ImageBlur"]})
    async with box.client(client_id="artist") as client:
        hung = (await client.queue_prompt(chain(7))).prompt_id
    await wait_running(box, hung)
    report = await box.doctor(fix=True, stuck_after=60.0)
    queue = checks(report)["queue"]
    assert queue.status is Status.WARN and queue.fix is not None and not queue.fix.auto
    assert queue.summary.endswith("(GPU busy)")
    assert "comfyfleet queue box repair" in queue.fix.text
    assert report.fixes == []
    async with box.client() as client:
        assert hung in [i.prompt_id for i in (await client.queue()).running]
    await box.knobs({"release": True})
    await box.wait_history([hung])


async def test_a_queue_hung_while_the_gpu_idles_is_repaired_by_fix(box: Box) -> None:
    # The field report's build: the queue persisted in user/queue.db, which corrupts.
    await box.sh(
        'echo "COMFYUI_ARGS=\\"--disable-auto-launch --port 18188 --persisted-queue\\"" '
        '>> "$WORKSPACE/.env"'
    )
    await box.restart()
    await box.knobs({"corrupt_queue_db": True})
    async with box.client(client_id="artist") as client:
        assert "--persisted-queue" in (await client.system_stats()).argv
        stuck = (await client.queue_prompt(chain(1))).prompt_id
        waiting = [(await client.queue_prompt(chain(c))).prompt_id for c in (2, 3)]
    await wait_running(box, stuck)

    fixed = await box.doctor(fix=True, stuck_after=60.0, repair_window=10.0)
    assert fixed.before is not None
    queue = {c.name: c for c in fixed.before}["queue"]
    assert queue.status is Status.FAIL and queue.fix is not None
    assert queue.fix.kind is FixKind.QUEUE_REPAIR
    assert queue.summary.startswith(f"prompt {stuck} made no progress for ")
    assert queue.summary.endswith("(GPU idle)")
    assert [f.action for f in fixed.fixes] == ["queue-repair"]  # the ladder restarted it
    assert fixed.repair is not None and fixed.repair.repaired
    assert [s.rung.value for s in fixed.repair.steps][-1] == "remove-queue-files"
    assert fixed.repair.resubmitted == waiting
    assert statuses(fixed)["queue"] == "ok" and fixed.status is Status.OK
    done = await box.wait_history(waiting)
    assert all(e.succeeded and e.outputs for e in done.values())
    assert all(e.item is not None and e.item.client_id == "artist" for e in done.values())
