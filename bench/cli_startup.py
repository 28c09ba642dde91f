"""Start-up cost of the CLI: `comfyfleet --help` and `comfyfleet ls --json` (sandbox profile)
against `python -c pass` and a bare Typer app's `--help`, run interleaved.

    python bench/cli_startup.py [--runs 20]

Prints the median wall time of each and the ratios; the aim is `--help` within 1.2x of the
bare Typer app.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_TYPER = """
import typer
app = typer.Typer()
@app.command()
def hello(name: str = "world") -> None:
    print(name)
@app.command()
def bye() -> None:
    pass
app()
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    exe = shutil.which("comfyfleet")
    if exe is None:
        raise SystemExit("install comfyfleet first: pip install -e .")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bare = base / "bare.py"
        bare.write_text(BARE_TYPER)
        env = {
            **os.environ,
            "HOME": str(base),
            "COMFYFLEET_PATHS__DATA_DIR": str(base / "data"),
            "COMFYFLEET_PATHS__CONFIG_DIR": str(base / "config"),
            "COMFYFLEET_PROFILE": "sandbox",
        }
        subprocess.run(
            [exe, "sandbox", "start", "--detach", "--no-hosts"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            cases = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "bare Typer --help": [sys.executable, str(bare), "--help"],
                "comfyfleet --help": [exe, "--help"],
                "comfyfleet ls --json": [exe, "ls", "--json"],
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            for cmd in cases.values():  # warm the page cache and compiled bytecode
                timed(cmd, env)
            for _ in range(args.runs):
                for name, cmd in cases.items():
                    times[name].append(timed(cmd, env))
        finally:
            subprocess.run([exe, "sandbox", "stop"], env=env, stdout=subprocess.DEVNULL)
    med = {name: statistics.median(values) for name, values in times.items()}
    base_t, typer_t = med["python -c pass"], med["bare Typer --help"]
    print(f"median of {args.runs} runs each (interleaved)")
    print(f"{'command':24} {'time':>9} {'vs python':>10} {'vs Typer':>9}")
    for name, value in med.items():
        print(f"{name:24} {value * 1000:7.1f}ms {value / base_t:9.2f}x {value / typer_t:8.2f}x")


if __name__ == "__main__":
    main()
