"""Build the sandbox wheelhouse (tiny stand-in wheels) and unpack wheels into an environment.

A wheel is a zip holding the package files and `<name>-<version>.dist-info/{METADATA,WHEEL,
RECORD}`; that is all pip needs to resolve, install, upgrade and uninstall. The wheelhouse is
built once per machine under the sandbox cache dir, in a folder named after a digest of the
stand-in table, so a changed table builds a new one and concurrent builders never collide.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from comfyfleet.sandbox.host.standins import STANDINS, StandIn

FORMAT = "1"  # bump when the wheel contents change without the table changing


def dist_name(name: str) -> str:
    """The file-name form of a distribution name (`nvidia-cublas-cu12` -> `nvidia_cublas_cu12`)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_filename(standin: StandIn) -> str:
    return f"{dist_name(standin.name)}-{standin.version}-py3-none-any.whl"


def wheelhouse_dir(cache_dir: Path) -> Path:
    digest = hashlib.sha256(FORMAT.encode())
    for s in STANDINS:
        digest.update(f"{s.name}|{s.version}|{s.requires}|{s.import_names}|{s.kind}\n".encode())
    return cache_dir / "sandbox" / f"wheelhouse-{digest.hexdigest()[:16]}"


def ensure_wheelhouse(cache_dir: Path) -> Path:
    """The wheelhouse folder, built now if this machine has none for the current table."""
    target = wheelhouse_dir(cache_dir)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=target.parent))
    try:
        for standin in STANDINS:
            build_wheel(standin, staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # lost a race to another builder: theirs is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_wheel(standin: StandIn, dest: Path) -> Path:
    files = {f"{path}": text.encode() for path, text in module_files(standin).items()}
    info = f"{dist_name(standin.name)}-{standin.version}.dist-info"
    files[f"{info}/METADATA"] = _metadata(standin).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: comfyfleet-sandbox\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    files[f"{info}/top_level.txt"] = "".join(
        sorted({n.split(".")[0] + "\n" for n in standin.import_names})
    ).encode()
    record = "".join(_record_line(path, data) for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    out = dest / wheel_filename(standin)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2025, 1, 1, 0, 0, 0)), data)
    return out


def _metadata(standin: StandIn) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {standin.name}",
        f"Version: {standin.version}",
        f"Summary: sandbox stand-in for {standin.name} {standin.version}",
        "Requires-Python: >=3.9",
        *(f"Requires-Dist: {req}" for req in standin.requires),
    ]
    return "\n".join(lines) + "\n"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def module_files(standin: StandIn) -> dict[str, str]:
    """The Python files of a stand-in: `__version__` everywhere, more for torch and friends."""
    version = standin.version
    header = f'"""Sandbox stand-in for {standin.name} {version}."""\n\n__version__ = "{version}"\n'
    if standin.kind == "torch":
        cuda = None if version.endswith("+cpu") else "12.8"
        return {
            "torch/__init__.py": header + "\nfrom torch import cuda, version  # noqa: E402\n",
            "torch/version.py": (
                f'__version__ = "{version}"\ncuda = {cuda!r}\nhip = None\n'
                f'git_version = "{hashlib.sha1(version.encode()).hexdigest()}"\n'
            ),
            "torch/cuda/__init__.py": _TORCH_CUDA.format(has_cuda=cuda is not None),
        }
    body = header
    if standin.kind == "torch-addon":
        body += _ADDON_CHECK.format(
            module=standin.import_names[0],
            expects=standin.pairs_with,
            fatal=standin.name != "xformers",
        )
    out: dict[str, str] = {}
    for name in standin.import_names:
        out["/".join(name.split(".")) + "/__init__.py"] = body
    return out


_TORCH_CUDA = '''"""CUDA as the sandbox host shows it: its GPUs exist while GPU_COUNT says so."""

import os

_BUILT_WITH_CUDA = {has_cuda}


def device_count():
    if not _BUILT_WITH_CUDA:
        return 0
    try:
        return int(os.environ.get("GPU_COUNT", "0"))
    except ValueError:
        return 0


def is_available():
    return device_count() > 0


def get_device_name(device=0):
    if not is_available():
        raise RuntimeError("Found no NVIDIA driver on your system.")
    return os.environ.get("SANDBOX_GPU_NAME", "NVIDIA GeForce RTX 4090")
'''

# A binary extension built against another torch fails to load (or, for xformers, warns).
_ADDON_CHECK = """
import sys as _sys

import torch as _torch

_EXPECTS = "{expects}"
if _torch.__version__.split("+")[0] != _EXPECTS:
    _msg = ("{module} was built for PyTorch " + _EXPECTS + " but PyTorch "
            + _torch.__version__ + " is installed")
    if {fatal}:
        raise RuntimeError("operator {module}::nms does not exist (" + _msg + ")")
    print("WARNING[XFORMERS]: xFormers can't load C++/CUDA extensions. " + _msg, file=_sys.stderr)
"""


def site_packages(prefix: Path) -> Path:
    """The purelib folder of the environment at `prefix` (a venv made by this Python)."""
    path = sysconfig.get_path(
        "purelib", scheme="venv", vars={"base": str(prefix), "platbase": str(prefix)}
    )
    return Path(path)


def unpack_wheel(wheel: Path, prefix: Path) -> None:
    """Install `wheel` into the environment at `prefix` as pip would (RECORD kept for pip)."""
    target = site_packages(prefix)
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(target)
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
    (target / info / "INSTALLER").write_text("pip\n")
    with (target / info / "RECORD").open("a") as fh:
        fh.write(_record_line(f"{info}/INSTALLER", b"pip\n"))
