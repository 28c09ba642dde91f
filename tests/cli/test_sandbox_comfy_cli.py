"""`comfyfleet sandbox comfy`: one standalone sandbox ComfyUI, stopped with Ctrl+C."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx


def test_serves_until_ctrl_c(tmp_path: Path) -> None:
    exe = shutil.which("comfyfleet")
    assert exe
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [exe, "sandbox", "comfy", "--port", "0", "--root", str(root), "--speed", "10"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            url = match.group(1) if match else None
        assert url, "the server never said where it listens"
        stats = httpx.get(url + "/system_stats", timeout=10).json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
        assert (root / "models" / "checkpoints").is_dir()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
