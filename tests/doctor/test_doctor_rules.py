"""The doctor's rules as tables: observations in, status / evidence / fix out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

import pytest

from comfyfleet.control import doctor_host_rules as host
from comfyfleet.control import doctor_rules as rules
from comfyfleet.control.doctor_model import TITLES, Check, FixKind, Status, cli, worst
from comfyfleet.models.comfy import SystemStats
from comfyfleet.remote.comfylog import last_startup
from comfyfleet.remote.host_facts import (
    DriverInfo,
    MemInfo,
    parse_driver,
    parse_meminfo,
    within_cgroup,
)
from comfyfleet.remote.parsing import DiskUsage, GpuInfo, GpuProcess
from comfyfleet.remote.python_env import ForeignModule, PipCheck, TorchFacts, VenvFacts

GIB = 1024**3
TORCH = TorchFacts("2.8.0+cu128", "12.8", True, "NVIDIA GeForce RTX 4090")
DRIVER = DriverInfo("570.172.08", "12.8")


def venv(
    versions: Mapping[str, str | None] | None = None,
    requires: Mapping[str, tuple[str, ...] | None] | None = None,
    modules: Mapping[str, bool] | None = None,
    torch: TorchFacts | None = TORCH,
    torch_error: str | None = None,
) -> VenvFacts:
    return VenvFacts(
        executable="/venv/main/bin/python",
        prefix="/venv/main",
        python_version="3.12.3",
        versions={"torch": "2.8.0+cu128", **(versions or {})},
        requires=dict(requires or {}),
        modules=dict(modules or {}),
        torch=torch,
        torch_error=torch_error,
    )


LOG = """\
Traceback (most recent call last):
  File "/workspace/ComfyUI/nodes.py", line 2131, in load_custom_node
ModuleNotFoundError: No module named 'onnx'
Cannot import /workspace/ComfyUI/custom_nodes/onnx_nodes module for custom nodes: \
No module named 'onnx'
Cannot import /workspace/ComfyUI/custom_nodes/deep module for custom nodes: \
No module named 'insightface.app'
Traceback (most recent call last):
RuntimeError: this pack is broken
Cannot import /workspace/ComfyUI/custom_nodes/broken module for custom nodes: this pack is broken
Skip /workspace/ComfyUI/custom_nodes/helper.py module for custom nodes due to the lack of \
NODE_CLASS_MAPPINGS or NODES_LIST (need one).

Import times for custom nodes:
   0.0 seconds: /workspace/ComfyUI/custom_nodes/websocket_image_save.py
   0.0 seconds (IMPORT FAILED): /workspace/ComfyUI/custom_nodes/helper.py
   0.0 seconds (IMPORT FAILED): /workspace/ComfyUI/custom_nodes/onnx_nodes
   0.1 seconds (IMPORT FAILED): /workspace/ComfyUI/custom_nodes/deep
   0.2 seconds (IMPORT FAILED): /workspace/ComfyUI/custom_nodes/broken

Starting server
"""


def test_pack_failures_pair_each_failed_pack_with_its_reason_and_module() -> None:
    report = last_startup(LOG)
    assert report is not None
    failures = {f.name: (f.reason, f.missing_module) for f in host.pack_failures(report)}
    assert failures == {
        "helper.py": ("no NODE_CLASS_MAPPINGS (not a custom node pack)", None),
        "onnx_nodes": ("No module named 'onnx'", "onnx"),
        "deep": ("No module named 'insightface.app'", "insightface"),
        "broken": ("this pack is broken", None),
    }
    check = host.custom_nodes("box", report)
    assert check.status is Status.FAIL and check.fix is not None and not check.fix.auto
    assert check.summary == "4 of 5 pack(s) failed: helper.py, onnx_nodes, deep, broken"
    assert "comfyfleet pip box -- install insightface onnx" in check.fix.text
    assert host.custom_nodes("box", None).status is Status.OK
    healthy = last_startup("Import times for custom nodes:\n   0.0 seconds: /x/custom_nodes/a\n")
    assert host.custom_nodes("box", healthy).summary == "all 1 pack(s) imported"


def foreign(module: str, *dists: tuple[str, str | None]) -> ForeignModule:
    return ForeignModule(module, "/usr/bin/python3", f"/usr/lib/{module}/__init__.py", dists)


def failures() -> list[host.PackFailure]:
    report = last_startup(LOG)
    assert report is not None
    return host.pack_failures(report)


def test_a_module_only_another_python_has_is_installed_at_its_version() -> None:
    found = [foreign("onnx", ("onnx", "1.19.0")), foreign("insightface", ("insightface", None))]
    check = rules.venv_packages("my box", venv(), failures(), found)
    assert check.status is Status.FAIL and check.fix is not None
    assert check.fix.kind is FixKind.VENV_INSTALL and check.fix.restart
    assert check.fix.packages == ("onnx==1.19.0", "insightface")
    assert "comfyfleet pip 'my box' -- install onnx==1.19.0 insightface" in check.fix.text
    assert check.evidence[0] == (
        "onnx_nodes: No module named 'onnx'; /usr/bin/python3 has it "
        "(/usr/lib/onnx/__init__.py): onnx 1.19.0"
    )


@pytest.mark.parametrize(
    ("modules", "found", "status", "kind"),
    [
        ({}, [], Status.OK, None),  # nobody has it: the custom-nodes check reports it
        ({"onnx": True}, [], Status.WARN, FixKind.RESTART),  # installed since the start
        ({}, [foreign("onnx")], Status.OK, None),  # no distribution known: nothing to install
    ],
)
def test_venv_packages_other_cases(
    modules: dict[str, bool], found: list[ForeignModule], status: Status, kind: FixKind | None
) -> None:
    check = rules.venv_packages("box", venv(modules=modules), failures(), found)
    assert check.status is status
    assert (check.fix.kind if check.fix else None) is kind


def test_the_distribution_named_after_the_module_is_preferred() -> None:
    found = foreign("cv2", ("opencv-contrib-python", "4.12.0.88"), ("opencv-python", "4.12.0.88"))
    assert rules._distribution(found) == ("opencv-contrib-python", "4.12.0.88")
    named = foreign("onnx", ("onnx-weekly", "1"), ("ONNX", "1.19.0"))
    assert rules._distribution(named) == ("ONNX", "1.19.0")


@pytest.mark.parametrize(
    ("facts", "driver", "cuda_max_good", "status", "summary"),
    [
        (venv(), DRIVER, 12.9, Status.OK, "torch 2.8.0+cu128 (CUDA 12.8) sees NVIDIA GeForce"),
        (venv(), DRIVER, 12.4, Status.FAIL, "torch 2.8.0+cu128 is built for CUDA 12.8; the dri"),
        (venv(), DriverInfo("535.1", "12.2"), None, Status.FAIL, "torch 2.8.0+cu128 is built"),
        (venv(), None, None, Status.OK, "torch 2.8.0+cu128 (CUDA 12.8) sees"),
        (
            venv(torch=TorchFacts("2.9.0+cpu", None, False, None)),
            DRIVER,
            12.9,
            Status.FAIL,
            "torch 2.9.0+cpu is a CPU build",
        ),
        (
            venv(torch=TorchFacts("2.8.0+cu128", "12.8", False, None)),
            DRIVER,
            12.9,
            Status.FAIL,
            "torch 2.8.0+cu128 (CUDA 12.8) does not see a GPU",
        ),
        (
            venv(torch=None, torch_error="ImportError: libcudart.so.12"),
            DRIVER,
            12.9,
            Status.FAIL,
            "torch does not import in the venv: ImportError: libcudart.so.12",
        ),
    ],
)
def test_torch_cuda_and_driver(
    facts: VenvFacts,
    driver: DriverInfo | None,
    cuda_max_good: float | None,
    status: Status,
    summary: str,
) -> None:
    check = rules.torch_cuda("box", facts, driver, cuda_max_good)
    assert check.status is status and check.summary.startswith(summary)
    # torch is never changed by --fix: its fixes are texts only
    assert check.fix is None or not check.fix.auto


def test_the_driver_limit_is_the_lower_of_nvidia_smi_and_vast() -> None:
    check = rules.torch_cuda("box", venv(), DriverInfo("570", "12.8"), 12.4)
    assert check.summary.endswith("the driver supports 12.4")
    assert check.evidence == ("nvidia-smi: driver 570, CUDA 12.8", "Vast: cuda_max_good 12.4")


@pytest.mark.parametrize(
    ("versions", "requires", "status", "removed"),
    [
        ({"xformers": "0.0.32"}, {"xformers": ("torch==2.8.0",)}, Status.OK, ()),
        ({"xformers": "0.0.33"}, {"xformers": ("torch==2.9.0",)}, Status.FAIL, ("xformers",)),
        (  # a marker that does not apply on Linux is ignored
            {"xformers": "0.0.33"},
            {"xformers": ('torch==2.9.0; sys_platform == "win32"',)},
            Status.OK,
            (),
        ),
        (
            {"xformers": "0.0.32", "sageattention": "2.2.0", "torchvision": "0.23.0+cu128"},
            {"xformers": ("torch>=2.7",), "sageattention": ("torchvision==0.24.0", "triton")},
            Status.FAIL,
            ("sageattention",),
        ),
        ({}, {}, Status.OK, ()),
    ],
)
def test_accelerators(
    versions: dict[str, str],
    requires: dict[str, tuple[str, ...]],
    status: Status,
    removed: tuple[str, ...],
) -> None:
    check = rules.accelerators("box", venv(versions=versions, requires=requires))
    assert check.status is status
    if removed:
        assert check.fix is not None and check.fix.kind is FixKind.VENV_UNINSTALL
        assert check.fix.packages == removed and check.fix.restart
        assert "torch stays as it is" in check.fix.text


def test_comfyui_frontend_and_pip_check() -> None:
    down = rules.comfyui("box", None, "connection refused", can_restart=True)
    assert down.status is Status.FAIL and down.fix is not None and down.fix.kind is FixKind.RESTART
    no_ssh = rules.comfyui("box", None, "x", can_restart=False).fix
    assert no_ssh is not None and not no_ssh.auto
    stats = SystemStats("posix", "0.3.64", "3.12.3 (main)", "2.8.0+cu128", 1, 1, ())
    assert rules.comfyui("box", stats, None, True).summary == (
        "ComfyUI 0.3.64 answers (PyTorch 2.8.0+cu128, Python 3.12.3)"
    )
    assert rules.frontend("box", "1.27.10", "1.27.10", True).status is Status.OK
    old = rules.frontend("box", "1.27.10", "1.26.2", True)
    assert old.status is Status.WARN and old.fix is not None and not old.fix.auto
    assert "comfyui-frontend-package==1.27.10" in old.fix.text
    assert rules.frontend("box", "1.27.10", None, False).status is Status.SKIPPED
    assert rules.frontend("box", "1.27.10", None, True).status is Status.WARN
    assert rules.frontend("box", None, None, False).status is Status.OK
    broken = rules.pip_check("box", PipCheck(False, ("x 1 requires y, which is not installed.",)))
    assert broken.status is Status.WARN and broken.evidence[0].startswith("x 1 requires y")
    assert rules.pip_check("box", PipCheck(True, ())).status is Status.OK


def disk_usage(free_gib: float, pct: int, mount: str = "/") -> DiskUsage:
    free = int(free_gib * GIB)
    return DiskUsage(mount, "overlay", 100 * GIB, 100 * GIB - free, free, pct, mount)


@pytest.mark.parametrize(
    ("usage", "status"),
    [
        ({"/": disk_usage(50, 50)}, Status.OK),
        ({"/": disk_usage(8, 50)}, Status.WARN),
        ({"/": disk_usage(50, 92)}, Status.WARN),
        ({"/": disk_usage(1.5, 50)}, Status.FAIL),
        ({"/": disk_usage(50, 50), "/workspace": disk_usage(1, 99, "/workspace")}, Status.FAIL),
        ({"/": None}, Status.SKIPPED),
    ],
)
def test_disk(usage: dict[str, DiskUsage | None], status: Status) -> None:
    check = host.disk("box", usage)
    assert check.status is status
    assert (check.fix is not None) is (status in (Status.WARN, Status.FAIL))


@pytest.mark.parametrize(
    ("info", "status"),
    [
        (MemInfo(64 * GIB, 40 * GIB), Status.OK),
        (MemInfo(64 * GIB, 3 * GIB), Status.WARN),
        (MemInfo(200 * GIB, 15 * GIB), Status.WARN),  # under 10 %
        (MemInfo(64 * GIB, GIB // 2), Status.FAIL),
        (None, Status.SKIPPED),
    ],
)
def test_memory(info: MemInfo | None, status: Status) -> None:
    assert host.memory("box", info).status is status


def gpu(*procs: GpuProcess) -> GpuInfo:
    return GpuInfo(0, "NVIDIA GeForce RTX 4090", "GPU-1", 0, 9000, 24564, 40, procs)


def test_gpu_memory_held_by_stray_processes() -> None:
    comfy = GpuProcess(100, "/venv/main/bin/python", 1230, True)
    stray = GpuProcess(4242, "python3 train.py", 7000, False)
    assert host.gpu_memory("box", [gpu(comfy)]).status is Status.OK
    check = host.gpu_memory("box", [gpu(comfy, stray)])
    assert check.status is Status.WARN and check.fix is not None and not check.fix.auto
    assert "GPU 0: pid 4242 (python3 train.py) holds 7000 MiB" in check.evidence
    assert check.fix.text.endswith("comfyfleet exec box -- kill 4242")
    assert host.gpu_memory("box", []).status is Status.SKIPPED


def test_memory_is_bounded_by_the_containers_cgroup_limit() -> None:
    machine = MemInfo(256 * GIB, 200 * GIB)  # what a container's /proc/meminfo shows
    v2 = f"memory.max {32 * GIB}\nmemory.current {30 * GIB}\ninactive_file {4 * GIB}\n"
    assert within_cgroup(machine, v2) == MemInfo(32 * GIB, 6 * GIB, limited=True)
    v1 = (
        f"memory/memory.limit_in_bytes {48 * GIB}\n"
        f"memory/memory.usage_in_bytes {10 * GIB}\ntotal_inactive_file {2 * GIB}\n"
    )
    assert within_cgroup(machine, v1) == MemInfo(48 * GIB, 40 * GIB, limited=True)
    unlimited = "memory.max max\nmemory.current 1000\n"  # v2 without a limit
    assert within_cgroup(machine, unlimited) == machine
    v1_unlimited = "memory/memory.limit_in_bytes 9223372036854771712\n"
    assert within_cgroup(machine, v1_unlimited + "memory/memory.usage_in_bytes 5\n") == machine
    assert within_cgroup(machine, "") == machine and within_cgroup(None, v2) is None
    check = host.memory("box", within_cgroup(machine, v2))
    assert check.status is Status.OK and check.summary.endswith("(the container's limit)")
    tight = host.memory("box", MemInfo(32 * GIB, GIB // 2, limited=True))
    assert tight.status is Status.FAIL


def test_host_facts_parsers() -> None:
    meminfo = "MemTotal:       65536000 kB\nMemFree:  1000 kB\nMemAvailable:   32768000 kB\n"
    assert parse_meminfo(meminfo) == MemInfo(65536000 * 1024, 32768000 * 1024)
    old_kernel = "MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 200 kB\n"
    assert parse_meminfo(old_kernel) == MemInfo(1000 * 1024, 300 * 1024)
    assert parse_meminfo("") is None
    header = "| NVIDIA-SMI 570.172.08   Driver Version: 570.172.08     CUDA Version: 12.8     |"
    assert parse_driver(header) == DriverInfo("570.172.08", "12.8")
    assert parse_driver("bash: nvidia-smi: command not found") is None


def test_fix_texts_quote_the_target_and_the_report_order() -> None:
    assert cli("a b; rm -rf /", "restart") == "comfyfleet restart 'a b; rm -rf /'"
    assert list(TITLES)[::10] == ["comfyui", "queue"]
    ok = Check("disk", "d", Status.OK, "")
    assert worst([ok, Check("x", "x", Status.SKIPPED, "")]) is Status.OK
    assert worst([ok, Check("x", "x", Status.WARN, "")]) is Status.WARN
    assert worst([Check("x", "x", Status.FAIL, ""), ok]) is Status.FAIL


def test_only_persisted_queue_files_can_be_removed() -> None:
    from comfyfleet.errors import RemoteError
    from comfyfleet.remote.host_facts import purge_restart_command, queue_file_paths
    from comfyfleet.remote.layout import InstanceLayout

    comfy = PurePosixPath("/workspace/ComfyUI")
    layout = InstanceLayout(
        comfy, 18188, None, None, (), None, "supervisorctl restart comfyui", comfy.parent, "vast"
    )
    files = queue_file_paths(comfy)
    assert [p.name for p in files] == ["queue.db", "queue.db-wal", "queue.db-shm"]
    command = purge_restart_command(layout, files[:2])
    assert command == (
        "supervisorctl stop comfyui; rm -f -- /workspace/ComfyUI/user/queue.db "
        "/workspace/ComfyUI/user/queue.db-wal && supervisorctl start comfyui"
    )
    with pytest.raises(RemoteError, match="not a persisted queue file"):
        purge_restart_command(layout, [comfy / "user" / "comfyui.db"])
