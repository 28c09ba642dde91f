"""The host's pure parts: nvidia-smi rendering, stand-in wheels, the instance environment."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from datetime import datetime
from email.parser import HeaderParser
from pathlib import Path

import pytest

from comfyfleet.sandbox.host import HostSpec
from comfyfleet.sandbox.host.gpus import (
    GpuProcess,
    GpuState,
    QueryError,
    gpu_model,
    list_gpus,
    query_apps,
    query_gpu,
    table,
)
from comfyfleet.sandbox.host.layout import HostLayout, Ports, with_port
from comfyfleet.sandbox.host.pythons import create_env
from comfyfleet.sandbox.host.standins import STANDINS, find
from comfyfleet.sandbox.host.wheelhouse import build_wheel, ensure_wheelhouse, unpack_wheel

STATE = GpuState(gpu_model("RTX_4090"), 2, 7, [GpuProcess(0, 4321, "/venv/main/bin/python", 1230)])


def test_nvidia_smi_table_is_the_real_layout() -> None:
    text = table(STATE, [0, 1], datetime(2025, 10, 1, 12, 0, 0))
    lines = text.splitlines()
    assert lines[0].startswith("Wed Oct  1 12:00:00 2025")
    assert {len(line) for line in lines[1:]} == {91}
    assert sum("NVIDIA GeForce RTX 4090" in line for line in lines) == 2
    assert any("4321" in line and "/venv/main/bin/python" in line for line in lines)
    assert "1232MiB /  24564MiB" in text  # ComfyUI's memory plus the driver's own


def test_nvidia_smi_queries_follow_the_format_options() -> None:
    fields = "name,memory.used,memory.total,utilization.gpu"
    assert query_gpu(STATE, fields, "csv", [1]) == (
        "name, memory.used [MiB], memory.total [MiB], utilization.gpu [%]\n"
        "NVIDIA GeForce RTX 4090, 1 MiB, 24564 MiB, 0 %\n"
    )
    assert query_gpu(STATE, fields, "csv,noheader,nounits", [0]) == (
        "NVIDIA GeForce RTX 4090, 1232, 24564, 0\n"
    )
    assert query_apps(STATE, "pid,used_memory", "csv,noheader", [0, 1]) == "4321, 1230 MiB\n"
    assert query_apps(STATE, "pid", "csv,noheader", [1]) == ""
    assert list_gpus(STATE, [0]).startswith("GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-")
    with pytest.raises(QueryError, match='Field "fan" is not a valid field'):
        query_gpu(STATE, "fan", "csv", [0])
    with pytest.raises(QueryError):
        query_gpu(STATE, "name", None, [0])


def test_busy_gpu_shows_load() -> None:
    busy = GpuState(STATE.model, 1, 7, STATE.processes, busy=True)
    busy_row = query_gpu(busy, "utilization.gpu,temperature.gpu", "csv,noheader,nounits", [0])
    idle_row = query_gpu(STATE, "utilization.gpu,temperature.gpu", "csv,noheader,nounits", [0])
    (util, temp), (idle_util, idle_temp) = (
        [int(v) for v in row.split(",")] for row in (busy_row, idle_row)
    )
    assert util > 90 and idle_util == 0 and temp > idle_temp
    assert gpu_model("H100 SXM").memory_mib > gpu_model("RTX 3090").memory_mib
    assert gpu_model("Some New Card").name == "NVIDIA Some New Card"


def test_a_standin_wheel_is_a_valid_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(find("xformers", "0.0.32"), tmp_path)
    assert wheel.name == "xformers-0.0.32-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        meta = HeaderParser().parsestr(zf.read("xformers-0.0.32.dist-info/METADATA").decode())
        assert (meta["Name"], meta["Version"]) == ("xformers", "0.0.32")
        assert meta.get_all("Requires-Dist") == ["torch==2.8.0"]
        for line in zf.read("xformers-0.0.32.dist-info/RECORD").decode().splitlines():
            path, digest, size = line.split(",")
            if digest:
                data = zf.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert (digest, int(size)) == (f"sha256={expected.decode()}", len(data))


def test_wheelhouse_is_built_once_and_holds_every_standin(tmp_path: Path) -> None:
    first = ensure_wheelhouse(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert ensure_wheelhouse(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert len(list(first.glob("*.whl"))) == len(STANDINS)
    assert (first / "torch-2.9.0+cpu-py3-none-any.whl").exists()


def test_unpacked_torch_answers_like_the_build_it_stands_for(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    create_env(prefix)
    unpack_wheel(build_wheel(find("torch", "2.9.0+cpu"), tmp_path), prefix)
    probe = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
    out = subprocess.run(
        [prefix / "bin" / "python", "-c", probe],
        capture_output=True,
        text=True,
        env={"GPU_COUNT": "1"},
        check=True,
    ).stdout
    assert out.split() == ["2.9.0+cpu", "None", "False"]
    pip = subprocess.run(
        [prefix / "bin" / "pip", "show", "torch"],
        capture_output=True,
        text=True,
        env={"PIP_NO_INDEX": "1"},
        check=False,
    )
    assert "Version: 2.9.0+cpu" in pip.stdout


def test_a_torch_addon_breaks_on_another_torch(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    create_env(prefix)
    unpack_wheel(build_wheel(find("torch", "2.9.0+cu128"), tmp_path), prefix)
    unpack_wheel(build_wheel(find("torchvision", "0.23.0+cu128"), tmp_path), prefix)
    result = subprocess.run(
        [prefix / "bin" / "python", "-c", "import torchvision"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "torchvision was built for PyTorch 2.8.0" in result.stderr


def test_platform_variables_win_over_the_instance_env(tmp_path: Path) -> None:
    spec = HostSpec(
        instance_id=9,
        root=tmp_path,
        authorized_keys_file=tmp_path / "k",
        web_token="tok",
        env={
            "CONTAINER_ID": "1",
            "OPEN_BUTTON_TOKEN": "mine",
            "WEB_PASSWORD": "pw",
            "COMFYUI_ARGS": "--port=8188 --listen --preview-method auto",
            "-p 8188:8188": "1",
            "HF_TOKEN": "hf",
        },
        speed=1.0,
        gpu_name="RTX 4090",
        num_gpus=2,
        image="vastai/comfy:test",
    )
    env = HostLayout(tmp_path).environment(
        spec, Ports(22022, 28188, 18188), tmp_path / "w", "NVIDIA GeForce RTX 4090"
    )
    assert env["CONTAINER_ID"] == "9" and env["VAST_CONTAINERLABEL"] == "C.9"
    assert env["OPEN_BUTTON_TOKEN"] == "tok" and env["WEB_PASSWORD"] == "pw"
    assert env["COMFYUI_ARGS"] == "--listen --preview-method auto --port 18188"
    assert env["HF_TOKEN"] == "hf" and "-p 8188:8188" not in env
    assert env["GPU_COUNT"] == "2" and env["VAST_TCP_PORT_8188"] == "28188"
    assert env["PATH"].split(":")[:2] == [
        str(tmp_path / "usr/local/bin"),
        str(tmp_path / "usr/bin"),
    ]


def test_with_port_replaces_or_adds_the_port() -> None:
    assert (
        with_port("--disable-auto-launch --port 18188", 4000) == "--disable-auto-launch --port 4000"
    )
    assert with_port("", 4000) == "--port 4000"
