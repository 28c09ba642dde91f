"""The commands a host puts first on PATH (`<root>/usr/local/bin`): nvidia-smi, supervisorctl,
df.

Each is a two-line shell script running `comfyfleet.sandbox.host.shimcli` with the Python
that runs the sandbox (never the instance's own Pythons, whose packages users change), and
the host root baked in, so it finds the host's control endpoint even from a stripped env.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import comfyfleet
from comfyfleet.sandbox.host.layout import HostLayout

SHIMS = ("nvidia-smi", "supervisorctl", "df")


def write_shims(layout: HostLayout) -> None:
    package_parent = str(Path(comfyfleet.__file__).resolve().parents[1])
    for tool in SHIMS:
        path = layout.shim_dir / tool
        path.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={shlex.quote(package_parent)} exec {shlex.quote(sys.executable)} -s "
            f"-m comfyfleet.sandbox.host.shimcli {tool} --root {shlex.quote(str(layout.root))} "
            '"$@"\n'
        )
        path.chmod(0o755)
