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
from tests.catalog.standins import ThreadedStandin
from tests.models.modelserver import ModelServer


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


def served_world(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path, *names: str
) -> Iterator[tuple[dict[str, str], ModelServer, Path]]:
    """A sandbox cloud with a ready instance per name, its catalogs and model files served by
    a loopback stand-in; yields the CLI env, the stand-in and a folder for files."""
    base = tmp_path_factory.mktemp("served-cli")
    server = ModelServer(shared_dir / "fixtures" / "comfyui-manager")
    threaded = ThreadedStandin(server)
    try:
        for env in sandbox_world(tmp_path_factory):
            env["COMFYFLEET_NODES__RESTART_TIMEOUT"] = "6000"  # simulated s; a restart: 1-2 real
            env.update(server.env(base / "catalog-cache"))
            for name in names:
                up = run(env, "up", "--order", "dph_total", "--name", name, "--json")
                assert up.returncode == 0, up.stderr
            yield env, server, base
    finally:
        threaded.stop()


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
