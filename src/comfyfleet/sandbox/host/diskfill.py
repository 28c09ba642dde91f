"""`df` inside a host: the machine's own answer, less the space a test says is taken.

The control endpoint's `GET /disk` gives `leave_free` (bytes, or null). When it is set, every
file system line of POSIX output (`df -P`) shows at most that much available and the rest as
used: a nearly full disk without writing gigabytes. Otherwise `df` answers as the machine's.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Sequence

from comfyfleet.sandbox.host.layout import SYSTEM_PATH


def real_df() -> str:
    return shutil.which("df", path=SYSTEM_PATH) or "/bin/df"


def squeeze(output: str, leave_free: int, args: Sequence[str]) -> str:
    """`df -P` output with each file system's available space cut to `leave_free` bytes."""
    block = 1024 if "-k" in args else 512  # POSIX blocks, unless -k
    lines = []
    for line in output.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and all(f.isdigit() for f in fields[1:4]):
            fs, total, _used, avail, _cap, mount = fields
            free = min(int(avail), leave_free // block)
            used = int(total) - free
            cap = math.ceil(used * 100 / (used + free)) if used + free else 0
            line = f"{fs} {total} {used} {free} {cap}% {mount}"
        lines.append(line)
    return "".join(f"{line}\n" for line in lines)


def run_df(args: Sequence[str], leave_free: int | None) -> tuple[int, str, str]:
    """Run the machine's df with `args`; (exit code, stdout squeezed as set, stderr)."""
    done = subprocess.run([real_df(), *args], capture_output=True, text=True, check=False)
    out = done.stdout
    if leave_free is not None and "-P" in args:
        out = squeeze(out, leave_free, args)
    return done.returncode, out, done.stderr
