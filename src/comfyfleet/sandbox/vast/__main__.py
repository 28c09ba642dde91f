"""`python -m comfyfleet.sandbox.vast`: run the sandbox cloud server (what --detach starts)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from comfyfleet.errors import SandboxError
from comfyfleet.sandbox.vast.process import EXIT_ALREADY_RUNNING, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyfleet.sandbox.vast")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--credit", type=float, default=50.0)
    parser.add_argument("--no-hosts", action="store_true", help="made-up ports, no host processes")
    parser.add_argument("--exit-with", type=int, default=None, help="stop when this pid ends")
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")

    def ready(running: object) -> None:
        print(f"sandbox Vast API listening on {getattr(running, 'url', '')}", flush=True)

    try:
        asyncio.run(
            serve(
                args.state_dir,
                port=args.port,
                speed=args.speed,
                seed=args.seed,
                credit=args.credit,
                hosts=not args.no_hosts,
                exit_with=args.exit_with,
                ready=ready,
            )
        )
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
