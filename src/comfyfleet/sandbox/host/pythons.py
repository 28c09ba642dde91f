"""The two Python environments of a host: the ComfyUI venv and a distinct "system" Python.

Both are venvs of the Python running the sandbox, made without pip (fast) and with the base
interpreter's site-packages visible (so the sandbox ComfyUI can import its own code); their
`pip` is a wrapper around `python -m pip`, which installs into that environment only. What
one of them installs, the other does not see: the global-vs-venv mistake is reproducible.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import site
import sys
import sysconfig
import venv
from pathlib import Path

from comfyfleet.sandbox.host.standins import IMAGE_VENV, find
from comfyfleet.sandbox.host.wheelhouse import site_packages, unpack_wheel, wheel_filename


def create_env(prefix: Path) -> None:
    """Make a pip-less venv at `prefix` with `pip`, `pip3` and `pip3.X` wrappers in bin/."""
    if (prefix / "pyvenv.cfg").exists():
        return
    builder = venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True)
    builder.create(str(prefix))
    _see_running_env(prefix)
    python = shlex.quote(str(prefix / "bin" / "python"))
    wrapper = f'#!/bin/sh\nexec {python} -m pip "$@"\n'
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name in ("pip", "pip3", f"pip{ver}"):
        path = prefix / "bin" / name
        path.write_text(wrapper)
        path.chmod(0o755)


def _see_running_env(prefix: Path) -> None:
    # When the sandbox itself runs from a venv (pipx, a project venv), "system site-packages"
    # means the base interpreter's, which lacks the sandbox's own dependencies: add the
    # running environment's site dirs behind the new venv's own (as system site-packages are).
    if sys.prefix == sys.base_prefix:
        return
    dirs = dict.fromkeys(
        [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()]
    )
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs)
    (site_packages(prefix) / "_sandbox_running_env.pth").write_text(lines)


def install_image_packages(prefix: Path, wheelhouse: Path) -> list[str]:
    """Unpack the image's preinstalled stand-ins into `prefix`; returns the names installed.

    A stand-in whose distribution the base Python already has is skipped: the venv sees the
    real one, and a stand-in must never shadow a package the sandbox itself imports.
    """
    installed: list[str] = []
    for name, version in IMAGE_VENV.items():
        if _in_base(name):
            continue
        unpack_wheel(wheelhouse / wheel_filename(find(name, version)), prefix)
        installed.append(name)
    return installed


def _in_base(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
