"""`python -m comfyfleet.sandbox.comfy --root R --port P --speed S [--log FILE] [...]`.

Runs one sandbox ComfyUI until SIGTERM/SIGINT. It also takes the ComfyUI flags Vast's image
passes in `COMFYUI_ARGS` (`--disable-auto-launch`, `--enable-cors-header`, `--listen`: it
always listens on 127.0.0.1), so a host runs it as the image runs `main.py $COMFYUI_ARGS`.

    --log FILE                  the server log (default `<root>/comfyui.log`)
    --device-name NAME          the CUDA device ComfyUI reports (default: $SANDBOX_GPU_NAME,
                                else an RTX 4090)
    --persisted-queue           keep the queue in `<root>/user/queue.db` (see `queuestore`)
    --disable-all-custom-nodes, --whitelist-custom-nodes NAME...   as in ComfyUI
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from comfyfleet.sandbox.comfy.server import DEFAULT_DEVICE, serve


async def _main(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {
        "log_file": args.log,
        "device_name": args.device_name,
        "persisted_queue": args.persisted_queue,
        "disable_custom_nodes": args.disable_all_custom_nodes,
        "custom_node_whitelist": args.whitelist_custom_nodes,
    }
    # The sandbox listens on loopback only, whatever --listen asks for.
    task = asyncio.create_task(serve(args.root, "127.0.0.1", args.port, args.speed, **options))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyfleet.sandbox.comfy")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--listen", nargs="?", const="0.0.0.0")  # accepted; see _main
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument(
        "--device-name", default=os.environ.get("SANDBOX_GPU_NAME") or DEFAULT_DEVICE
    )
    parser.add_argument("--persisted-queue", action="store_true")
    parser.add_argument("--disable-all-custom-nodes", action="store_true")
    parser.add_argument("--whitelist-custom-nodes", nargs="+", default=[])
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
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
