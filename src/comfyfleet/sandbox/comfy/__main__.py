"""`python -m comfyfleet.sandbox.comfy --root R --port P --speed S [--log FILE]`.

Runs one sandbox ComfyUI until SIGTERM/SIGINT. It also takes the ComfyUI flags Vast's image
passes in `COMFYUI_ARGS` (`--disable-auto-launch`, `--enable-cors-header`, `--listen`: it
always listens on 127.0.0.1), so a host runs it as the image runs `main.py $COMFYUI_ARGS`.
`--log FILE`: the server keeps its log at `<root>/comfyui.log`; that name becomes a link to
FILE (an instance's portal log).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from comfyfleet.sandbox.comfy.server import serve


def _link_log(root: Path, target: Path) -> None:
    link = root / "comfyui.log"
    root.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.unlink(missing_ok=True)
    link.symlink_to(target)


async def _main(root: Path, host: str, port: int, speed: float) -> None:
    task = asyncio.create_task(serve(root, host, port, speed))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyfleet.sandbox.comfy")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--listen", nargs="?", const="0.0.0.0")  # accepted; see below
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--log", type=Path, default=None)
    for flag in (
        "--disable-auto-launch",
        "--enable-cors-header",
        "--cpu",
        "--lowvram",
        "--highvram",
        "--normalvram",
        "--disable-metadata",
    ):
        parser.add_argument(flag, action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    if args.log is not None:
        _link_log(args.root, args.log.resolve())
    # The sandbox listens on loopback only, whatever --listen asks for.
    asyncio.run(_main(args.root, "127.0.0.1", args.port, args.speed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
