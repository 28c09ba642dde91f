"""A host's two Pythons: the ComfyUI venv and the system one, fed from the wheelhouse only."""

from __future__ import annotations

from tests.sandbox_host.hostkit import RunningHost


async def run(host: RunningHost, command: str) -> tuple[int, str]:
    async with await host.connect() as conn:
        result = await conn.run(command, stderr=-2)  # stderr into stdout (asyncssh.STDOUT)
    return int(result.exit_status or 0), str(result.stdout)


async def test_the_venv_has_the_images_cuda_torch(host: RunningHost) -> None:
    code, out = await run(
        host,
        "/$WORKSPACE/../venv/main/bin/python -c 'import torch, torchvision, xformers; "
        "print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), "
        "torch.cuda.get_device_name(0), xformers.__version__)'",
    )
    assert code == 0, out
    assert out.split(maxsplit=3)[:3] == ["2.8.0+cu128", "12.8", "True"]
    assert out.strip().endswith("NVIDIA GeForce RTX 3090 0.0.32")


async def test_the_system_python_is_another_environment(host: RunningHost) -> None:
    code, out = await run(
        host, "command -v python3 pip; python3 -c 'import sys; print(sys.prefix)'"
    )
    python3, pip, prefix = out.split()
    assert python3 == pip.replace("/pip", "/python3") == str(host.root / "usr/bin/python3")
    assert prefix == str(host.root / "usr")
    code, out = await run(host, "python3 -c 'import torch'")
    assert code == 1 and "No module named 'torch'" in out


async def test_venv_pip_installs_from_the_wheelhouse_into_the_venv(host: RunningHost) -> None:
    venv = host.root / "venv/main/bin"
    code, out = await run(host, f"{venv}/pip install opencv-python-headless")
    assert code == 0, out
    assert "Successfully installed opencv-python-headless-4.12.0.88" in out
    code, out = await run(host, f"{venv}/python -c 'import cv2; print(cv2.__version__)'")
    assert (code, out.strip()) == (0, "4.12.0.88")
    code, out = await run(host, "python3 -c 'import cv2'")
    assert code == 1


async def test_system_pip_installs_beside_the_venv_not_into_it(host: RunningHost) -> None:
    code, out = await run(
        host, "pip install onnx && python3 -c 'import onnx; print(onnx.__file__)'"
    )
    assert code == 0, out
    assert out.strip().splitlines()[-1].startswith(str(host.root / "usr/lib"))
    code, out = await run(host, f"{host.root}/venv/main/bin/python -c 'import onnx'")
    assert code == 1 and "No module named 'onnx'" in out


async def test_pip_never_reaches_an_index(host: RunningHost) -> None:
    code, out = await run(host, "pip install --no-cache-dir requests-but-not-really==9.9")
    assert code == 1
    assert "No matching distribution found for requests-but-not-really==9.9" in out
    # Without the PIP_* variables, each environment's own pip.conf still says so.
    unset = "env -u PIP_NO_INDEX -u PIP_FIND_LINKS -u PIP_CONFIG_FILE"
    for pip in ("pip", f"{host.root}/venv/main/bin/pip"):
        code, out = await run(host, f"{unset} {pip} config list")
        assert "global.no-index='true'" in out.splitlines(), out


async def test_a_careless_install_would_replace_torch(host: RunningHost) -> None:
    venv = host.root / "venv/main/bin"
    code, out = await run(host, f"{venv}/pip install --dry-run xformers==0.0.33")
    assert code == 0, out
    assert "torch-2.9.0+cu128" in out and "xformers-0.0.33" in out
