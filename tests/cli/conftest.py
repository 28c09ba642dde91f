"""Drive the installed `comfyfleet` command as a user would: a subprocess with its own env."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def _command() -> list[str]:
    exe = shutil.which("comfyfleet")
    if exe is None:
        candidate = Path(sys.executable).parent / "comfyfleet"
        if not candidate.exists():
            pytest.fail("the comfyfleet console script is not installed: pip install -e '.[test]'")
        exe = str(candidate)
    return [exe]


@pytest.fixture
def cli(isolated_home: Path, tmp_path: Path) -> Any:
    """Run `comfyfleet ARGS...` in a subprocess (cwd: the test's tmp dir)."""

    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> CliResult:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.run(
            [*_command(), *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
