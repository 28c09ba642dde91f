"""`nvidia-smi`, `supervisorctl` and `df` inside a host, answered with the host's control
endpoint.

Run as `python -m comfyfleet.sandbox.host.shimcli TOOL --root ROOT [ARGS...]` (the shims on
the instance's PATH do that). Exit codes follow the real tools: nvidia-smi 0, or 2 for a bad
query; supervisorctl 0, 3 from `status` when a program is not running, 1 for an error.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from comfyfleet.sandbox.host.diskfill import run_df
from comfyfleet.sandbox.host.gpus import (
    GpuProcess,
    GpuState,
    QueryError,
    gpu_model,
    list_gpus,
    query_apps,
    query_gpu,
    table,
    with_comfy_status,
)
from comfyfleet.sandbox.host.layout import HostLayout
from comfyfleet.sandbox.host.spec import SPEC_FILE, Endpoints, HostSpec

PROGRAMS = ("comfyui", "caddy")


class ControlUnavailable(Exception):
    pass


def _call(root: Path, method: str, path: str, timeout: float = 90.0) -> Any:
    endpoints = Endpoints.read(root)
    if endpoints is None:
        raise ControlUnavailable("unix:///var/run/supervisor.sock no such file")
    req = urllib.request.Request(
        endpoints.control_url + path, method=method, data=b"{}" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}")
    except OSError as exc:
        raise ControlUnavailable(
            f"unix:///var/run/supervisor.sock refused connection ({exc})"
        ) from exc


# --- nvidia-smi ------------------------------------------------------------------------------


def nvidia_smi(root: Path, args: list[str]) -> int:
    spec = HostSpec.from_json((root / SPEC_FILE).read_text())
    opts: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            key, _, value = arg.partition("=")
            opts[key] = value
        elif arg in ("-i", "--id", "--format", "--query-gpu", "--query-compute-apps"):
            if i + 1 >= len(args):
                print(f"Option {arg} requires an argument.")
                return 2
            opts[arg if arg != "-i" else "--id"] = args[i + 1]
            i += 1
        elif arg in ("-L", "--list-gpus", "-q", "--query", "-h", "--help"):
            flags.add(arg)
        else:
            print('Invalid combination of input arguments. Please run "nvidia-smi -h" for help.')
            return 2
        i += 1
    if flags & {"-h", "--help"}:
        print("NVIDIA System Management Interface -- v570.172.08 (sandbox)")
        return 0
    try:
        gpu = _call(root, "GET", "/gpu", timeout=5)
    except ControlUnavailable:
        gpu = {"processes": [], "busy": False}
    state = GpuState(
        gpu_model(spec.gpu_name),
        spec.num_gpus,
        spec.instance_id,
        [GpuProcess(**p) for p in gpu["processes"]],
        bool(gpu["busy"]),
    )
    state = with_comfy_status(state, HostLayout(root).comfy_dir)
    ids = list(range(spec.num_gpus))
    if "--id" in opts:
        try:
            ids = [int(x) for x in opts["--id"].split(",")]
        except ValueError:
            ids = [-1]
        if any(not 0 <= x < spec.num_gpus for x in ids):
            print("No devices were found")
            return 6
    try:
        if "--query-gpu" in opts:
            sys.stdout.write(query_gpu(state, opts["--query-gpu"], opts.get("--format"), ids))
        elif "--query-compute-apps" in opts:
            sys.stdout.write(
                query_apps(state, opts["--query-compute-apps"], opts.get("--format"), ids)
            )
        elif flags & {"-L", "--list-gpus"}:
            sys.stdout.write(list_gpus(state, ids))
        else:
            sys.stdout.write(table(state, ids, datetime.now()))
    except QueryError as exc:
        print(exc)
        return 2
    return 0


# --- supervisorctl ---------------------------------------------------------------------------


def supervisorctl(root: Path, args: list[str]) -> int:
    if not args:
        args = ["status"]
    action, rest = args[0], args[1:]
    try:
        if action == "status":
            return _status(root, rest)
        if action in ("start", "stop", "restart"):
            return _act(root, action, rest)
        if action == "tail":
            return _tail(HostLayout(root), rest)
        if action == "pid":
            return _pid(root, rest)
    except ControlUnavailable as exc:
        print(exc)
        return 7
    print(f"*** Unknown syntax: {' '.join(args)}")
    return 1


def _status(root: Path, names: list[str]) -> int:
    listed = {s["name"]: s for s in _call(root, "GET", "/programs")}
    code = 0
    for name in names or list(listed):
        if name not in listed:
            print(f"{name}: ERROR (no such process)")
            code = 4
            continue
        print(listed[name]["line"])
        if listed[name]["state"] != "RUNNING":
            code = max(code, 3)
    return code


def _act(root: Path, action: str, names: list[str]) -> int:
    if not names:
        print(f"Error: {action} requires a process name")
        return 2
    if names == ["all"]:
        names = ["comfyui"]
    code = 0
    for name in names:
        if name not in PROGRAMS:
            print(f"{name}: ERROR (no such process)")
            code = 1
            continue
        if name == "caddy":
            print(f"{name}: ERROR (the sandbox's proxy cannot be {action}ed)")
            code = 1
            continue
        result = _call(root, "POST", f"/programs/{name}/{action}")
        if action in ("stop", "restart"):
            print(f"{name}: stopped" if result.get("stopped") else f"{name}: ERROR (not running)")
            if action == "stop" and not result.get("stopped"):
                code = 1
        if action in ("start", "restart"):
            if not result.get("started"):
                print(f"{name}: ERROR (already started)")
                code = 1
            elif result.get("state") == "FATAL":
                print(f"{name}: ERROR (spawn error)")
                code = 1
            else:
                print(f"{name}: started")
    return code


def _pid(root: Path, names: list[str]) -> int:
    status = _call(root, "GET", "/status")
    if not names:
        print(status["pid"])
        return 0
    comfy = status.get("comfyui") or {}
    print(comfy.get("pid") or 0 if names[0] == "comfyui" else status["pid"])
    return 0


def _tail(layout: HostLayout, args: list[str]) -> int:
    follow = False
    size = 1600
    names: list[str] = []
    for arg in args:
        if arg == "-f":
            follow = True
        elif arg.startswith("-") and arg[1:].isdigit():
            size = int(arg[1:])
        else:
            names.append(arg)
    if not names or names[0] not in PROGRAMS:
        print(f"{names[0] if names else ''}: ERROR (no such process name)")
        return 1
    path = layout.comfy_log if names[0] == "comfyui" else layout.root / "var/log/portal/caddy.log"
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            sys.stdout.buffer.write(fh.read())
            sys.stdout.flush()
            if follow:
                _follow(path, fh)
    except FileNotFoundError:
        return 0
    except KeyboardInterrupt:
        return 0
    return 0


def _follow(path: Path, fh: Any) -> None:
    inode = os.fstat(fh.fileno()).st_ino
    while True:
        chunk = fh.read(65536)
        if chunk:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            continue
        try:
            if path.stat().st_ino != inode:  # rotated: the program restarted
                fh.close()
                fh = path.open("rb")
                inode = os.fstat(fh.fileno()).st_ino
                continue
        except FileNotFoundError:
            pass
        time.sleep(0.2)


def df(root: Path, args: list[str]) -> int:
    """The machine's df, its free space cut as the host's `leave_free` knob says."""
    try:
        leave = _call(root, "GET", "/disk", timeout=5).get("leave_free")
    except ControlUnavailable:
        leave = None
    code, out, err = run_df(args, None if leave is None else int(leave))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--root":
        print("usage: shimcli TOOL --root ROOT [ARGS...]", file=sys.stderr)
        return 2
    tool, root, args = argv[0], Path(argv[2]), argv[3:]
    if tool == "nvidia-smi":
        return nvidia_smi(root, args)
    if tool == "supervisorctl":
        return supervisorctl(root, args)
    if tool == "df":
        return df(root, args)
    print(f"unknown tool {tool}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
