"""A "plain" ComfyUI install for tests: a folder with a stand-in main.py and a venv python.

The stand-in main.py answers GET /system_stats on 127.0.0.1:--port with its pid and argv, and
prints ComfyUI's start lines, which is all the restart fallback and the probes look at.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import httpx

MAIN_PY = """\
import http.server, json, os, sys

port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8188


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path.startswith("/system_stats")
        body = json.dumps({"system": {"pid": os.getpid(), "argv": sys.argv}}).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("Starting server", flush=True)
print(f"To see the GUI go to: http://127.0.0.1:{port}", flush=True)
server.serve_forever()
"""


def make_plain_comfy(folder: Path, venv: str = "venv") -> Path:
    """`folder` as a ComfyUI checkout with `<folder>/<venv>/bin/python`; returns the folder."""
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "custom_nodes").mkdir(exist_ok=True)
    (folder / "main.py").write_text(MAIN_PY)
    bin_dir = folder / venv / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python"
    if not python.exists():
        python.symlink_to(sys.executable)
    return folder


def stats(port: int) -> dict[str, object] | None:
    """The stand-in's /system_stats "system" object, or None while nothing answers."""
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/system_stats", timeout=2, trust_env=False)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    data: dict[str, object] = resp.json()["system"]
    return data


def stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
