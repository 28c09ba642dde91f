"""pid_alive: running, finished, zombie and impossible pids."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from comfyfleet.util.processes import pid_alive


def test_running_finished_and_zombie_processes() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        # Killed but not yet reaped: a zombie, which runs no more.
        while pid_alive(child.pid):
            assert time.monotonic() < deadline, "a killed child still counts as running"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
