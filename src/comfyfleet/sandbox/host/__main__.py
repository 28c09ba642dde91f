"""`python -m comfyfleet.sandbox.host --spec SPEC.json [--parent-pid PID] [--cache-dir DIR]`.

Runs one instance host until SIGTERM/SIGINT, or until PID (the process that launched it)
is gone, so a crashed launcher leaves no host behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from comfyfleet.config import Settings, load_settings
from comfyfleet.errors import ConfigError, SandboxError
from comfyfleet.sandbox.host.instance import InstanceHost
from comfyfleet.sandbox.host.spec import HostSpec


def _cache_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    try:
        return load_settings().cache_dir()
    except ConfigError:
        return Settings().cache_dir()


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != pid:
            stop.set()
            return
        await asyncio.sleep(0.5)


async def _run(spec: HostSpec, cache_dir: Path, parent_pid: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    host = InstanceHost(spec, cache_dir)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    try:
        await host.start()
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await host.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyfleet.sandbox.host")
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        spec = HostSpec.from_json(args.spec.read_text())
        asyncio.run(_run(spec, _cache_dir(args.cache_dir), args.parent_pid))
    except (OSError, SandboxError) as exc:
        logging.getLogger("comfyfleet.sandbox.host").error("host failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
