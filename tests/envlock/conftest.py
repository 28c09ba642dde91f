"""Two sandbox instances: `alpha`, made workflow-ready and locked once per module, and
`beta`, fresh from the same image, that the lock is applied to."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from tests.prepare.flows import (
    CHECKPOINT,
    PACK_CLASS,
    list_pack_in_catalog,
    make_prep_pack,
    make_simple_pack,
    serve_model,
    workflow,
)
from tests.prepare.world import World, open_world

from comfyfleet.control.envlock_format import EnvLock
from comfyfleet.services.envlock import lock_env, save_lock
from comfyfleet.services.instance_ops import pip
from comfyfleet.services.nodes import install_pack
from comfyfleet.services.prepare import PrepareRequest, prepare

EXTRA_PIP = "piexif==1.1.3"  # installed by hand on alpha (`comfyfleet pip alpha -- install`)


@dataclass
class Locked:
    world: World
    lock: EnvLock
    path: Path  # the lock file
    repos: Path  # the packs' repositories


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> AsyncIterator[World]:
    async with open_world(tmp_path_factory, shared_dir, ["alpha", "beta"]) as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def locked(world: World, tmp_path_factory: pytest.TempPathFactory) -> Locked:
    """alpha after `prepare`, a second pack installed then disabled, a package installed with
    its venv's pip by hand; and its lock."""
    base = tmp_path_factory.mktemp("envlock")
    repos = base / "repos"
    url = make_prep_pack(repos)
    list_pack_in_catalog(world.server, url, [PACK_CLASS])
    model_url, sha = serve_model(world.server, CHECKPOINT, 7)
    flow = workflow(base, "wf.json", model_url=model_url, model_sha=sha)
    cloud = world.with_settings()
    report = await prepare(cloud, PrepareRequest(flow, "alpha"))
    assert report.runnable, report.to_json()
    spare = make_simple_pack(repos, "spare_pack", "SpareNode", requirements="einops\n")
    await install_pack(cloud, "alpha", spare)
    folder = world.comfy_dir("alpha") / "custom_nodes"
    (folder / "spare_pack").rename(folder / "spare_pack.disabled")  # as ComfyUI-Manager does
    code = await pip(cloud, "alpha", ["install", EXTRA_PIP], _quiet, _quiet)
    assert code == 0
    lock = await lock_env(cloud, "alpha")
    path = base / "alpha.lock.json"
    save_lock(lock, path)
    return Locked(world, lock, path, repos)


def _quiet(_text: str) -> None:
    pass


def venv_versions(world: World, ref: str) -> dict[str, str]:
    """The instance venv's packages, read on the host's disk (not through comfyfleet)."""
    import json

    python = world.root(ref) / "venv" / "main" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out)}
