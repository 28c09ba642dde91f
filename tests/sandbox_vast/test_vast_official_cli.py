"""The official `vastai` 1.9.1 CLI, unchanged, against the simulated cloud.

The CLI is pip-installed once into pytest's cache dir (it is not a project dependency). Without
network the tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast, VastThread

from .conftest import QUICK

VASTAI = "vastai==1.9.1"
IMAGE = "vastai/comfy:v0.8.2-cuda-12.9-py312"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9mZmljaWFsY2xp cli@test"


@pytest.fixture(scope="session")
def vastai_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # kept across runs; a fresh install when pytest's cache plugin is off
    cache = getattr(request.config, "cache", None)
    target = Path(cache.mkdir("vastai-1.9.1")) if cache else tmp_path_factory.mktemp("vastai")
    marker = target / ".installed"
    if not marker.exists():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--upgrade",
                "--target",
                str(target),
                VASTAI,
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            message = f"cannot pip-install {VASTAI} (no network?): {proc.stderr[-1500:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        marker.write_text(VASTAI)
    return target


@pytest.fixture
def cloud() -> Iterator[VastThread]:
    handle = SandboxVast(speed=200.0, knobs=VastKnobs(QUICK)).start_in_thread()
    yield handle
    handle.stop()


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def vastai(vastai_dir: Path, cloud: VastThread) -> Run:
    """Run `vastai ARGS...` against the cloud (URL and key from VAST_URL / VAST_API_KEY)."""

    def run(*args: str, key: str | None = None, check: bool = True) -> Any:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(vastai_dir),
            VAST_URL=cloud.url,
            VAST_API_KEY=key or cloud.api_key,
            VASTAI_NO_UPDATE_CHECK="1",
            COLUMNS="200",
        )
        proc = subprocess.run(
            [sys.executable, str(vastai_dir / "bin" / "vastai"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check:
            assert proc.returncode == 0, f"vastai {args}: {proc.stdout}\n{proc.stderr}"
        return proc

    return run


def _raw(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def _until(run: Run, instance_id: int, status: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        row: dict[str, Any] = _raw(run("show", "instance", str(instance_id), "--raw"))
        if row["actual_status"] == status:
            return row
        assert time.monotonic() < deadline, f"{instance_id} stayed {row['actual_status']}"
        time.sleep(0.2)


def test_the_official_cli_rents_manages_and_destroys(vastai: Run, cloud: VastThread) -> None:
    offers = _raw(vastai("search", "offers", "gpu_name=RTX_4090 num_gpus=1", "--raw"))
    assert offers and all(o["gpu_name"] == "RTX 4090" and o["num_gpus"] == 1 for o in offers)
    table = vastai("search", "offers", "gpu_name=RTX_4090 num_gpus=1").stdout
    assert "RTX_4090" in table and str(offers[0]["id"]) in table

    created = _raw(
        vastai(
            "create",
            "instance",
            str(offers[0]["id"]),
            "--image",
            IMAGE,
            "--disk",
            "20",
            "--env",
            "-p 8188:8188 -e WEB_PASSWORD=pw",
            "--jupyter",
            "--direct",
            "--onstart-cmd",
            "entrypoint.sh",
            "--label",
            "cli-test",
            "--raw",
        )
    )
    assert created["success"] is True
    new_id = created["new_contract"]
    row = _until(vastai, new_id, "running")
    assert row["extra_env"]["WEB_PASSWORD"] == "pw"  # the CLI turns the pairs into a dict
    assert row["image_runtype"] == "jupyter_direc ssh_direc ssh_proxy"
    ssh_url = vastai("ssh-url", str(new_id)).stdout.strip()
    assert ssh_url == f"ssh://root@127.0.0.1:{row['ports']['22/tcp'][0]['HostPort']}"

    listed = _raw(vastai("show", "instances", "--raw"))
    assert [i["id"] for i in listed] == [new_id]
    shown = vastai("show", "instances", "--no-color", "--full").stdout
    assert "Total: 1 instances" in shown and "cli-test" in shown

    assert (
        f"label for {new_id} set to renamed."
        in vastai("label", "instance", str(new_id), "renamed").stdout
    )
    assert f"stopping instance {new_id}." in vastai("stop", "instance", str(new_id)).stdout
    row = _raw(vastai("show", "instance", str(new_id), "--raw"))
    assert (row["actual_status"], row["intended_status"], row["label"]) == (
        "exited",
        "stopped",
        "renamed",
    )
    assert f"starting instance {new_id}." in vastai("start", "instance", str(new_id)).stdout
    _until(vastai, new_id, "running")

    user = _raw(vastai("show", "user", "--raw"))
    assert user["credit"] < 50.0 and "api_key" not in user
    assert "Credit" in vastai("show", "user").stdout

    assert "ssh-key created" in vastai("create", "ssh-key", KEY).stdout
    assert [k["key"] for k in _raw(vastai("show", "ssh-keys", "--raw"))] == [KEY]

    logs = vastai("logs", str(new_id)).stdout
    assert "container started" in logs

    assert (
        f"destroying instance {new_id}." in vastai("destroy", "instance", str(new_id), "-y").stdout
    )
    gone = vastai("show", "instance", str(new_id), check=False)
    assert gone.returncode == 1 and "not found or no longer exists" in gone.stderr


def test_the_official_cli_reports_our_errors(vastai: Run, cloud: VastThread) -> None:
    denied = vastai("show", "user", key="not-the-key", check=False)
    assert "Failed with error 401: Invalid user key" in denied.stderr
    cloud.knobs.set_search_quota(0)
    quota = vastai("search", "offers", "gpu_name=RTX_4090", check=False)
    assert "Failed with error 429: Daily search quota exceeded. Resets at" in quota.stderr
    gone = vastai("destroy", "instance", "12345", "-y", check=False)
    assert "Failed with error 404: Instance 12345 not found." in gone.stderr


def test_the_official_cli_launches_by_gpu_name(vastai: Run) -> None:
    launched = _raw(
        vastai("launch", "instance", "-g", "RTX_3090", "-n", "1", "-i", IMAGE, "--ssh", "--raw")
    )
    assert launched["success"] is True
    row = _raw(vastai("show", "instance", str(launched["new_contract"]), "--raw"))
    assert (row["gpu_name"], row["num_gpus"], row["image_uuid"]) == ("RTX 3090", 1, IMAGE)
    # The CLI took its --gpu-name choices from the simulator's market.
    unknown = vastai("launch", "instance", "-g", "Voodoo_5", "-n", "1", "-i", IMAGE, check=False)
    assert unknown.returncode != 0 and "invalid choice" in unknown.stderr
