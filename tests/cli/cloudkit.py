"""A detached sandbox cloud for CLI tests, and helpers to drive the installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def sandbox_world(
    tmp_path_factory: pytest.TempPathFactory, **extra: str
) -> Iterator[dict[str, str]]:
    """A detached sandbox cloud (for a module-scoped fixture); env for every CLI call,
    `extra` (COMFYFLEET_* settings) added."""
    base = tmp_path_factory.mktemp("cloud-cli")
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "COMFYFLEET_PATHS__DATA_DIR": str(base / "data"),
        "COMFYFLEET_PATHS__CONFIG_DIR": str(base / "config"),
        "COMFYFLEET_CONFIG": str(base / "config" / "config.toml"),
        "COMFYFLEET_PROFILE": "sandbox",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        **extra,
    }
    env.pop("VAST_API_KEY", None)
    # --exit-with: a killed test run leaves no sandbox behind.
    owner = str(os.getpid())
    started = run(
        env, "sandbox", "start", "--detach", "--speed", "100", "--json", "--exit-with", owner
    )
    assert started.returncode == 0, started.stderr
    try:
        yield env
    finally:
        run(env, "sandbox", "stop")


def exe() -> str:
    exe = shutil.which("comfyfleet")
    assert exe, "the comfyfleet console script is not installed"
    return exe


def run(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe(), *args], env=env, capture_output=True, text=True, timeout=timeout)


def api(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    state = json.loads(
        (Path(env["COMFYFLEET_PATHS__DATA_DIR"]) / "sandbox" / "sandbox.json").read_text()
    )
    return state["url"], {"Authorization": f"Bearer {state['api_key']}"}


def vast_instances(env: dict[str, str]) -> list[dict[str, Any]]:
    url, headers = api(env)
    data = httpx.get(url + "/api/v0/instances/", headers=headers, timeout=10).json()
    instances: list[dict[str, Any]] = data["instances"]
    return instances


def knobs(env: dict[str, str], body: dict[str, Any]) -> None:
    url, headers = api(env)
    r = httpx.post(url + "/__sandbox/knobs", headers=headers, json=body, timeout=10)
    assert r.status_code == 200, r.text


def untracked_billing(env: dict[str, str]) -> list[int]:
    """Instances Vast bills for that comfyfleet does not track (after reconciling via `ls`)."""
    listed = run(env, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    tracked = {v["id"] for v in json.loads(listed.stdout)}
    return [i["id"] for i in vast_instances(env) if i["id"] not in tracked]


def destroy_all(env: dict[str, str]) -> None:
    for inst in vast_instances(env):
        run(env, "destroy", str(inst["id"]), "--yes")
    assert vast_instances(env) == []
