"""A test world for `prepare` and `env`: a model server that also stands in for the catalogs,
a simulated cloud whose hosts are real (SSH, git, pip), and ready instances on it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.models.conftest import QUICK, make_settings
from tests.models.modelserver import ModelServer

from comfyfleet.config import Settings
from comfyfleet.remote.parsing import ProcessInfo
from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services.cloud import Cloud, CloudConfig, open_cloud
from comfyfleet.services.instance_ops import ps
from comfyfleet.services.up import UpRequest, up
from comfyfleet.state import EventKind

SPEED = 100.0


@dataclass
class World:
    server: ModelServer
    sky: SandboxVast
    cloud: Cloud
    base: Path
    names: tuple[str, ...]

    def root(self, ref: str) -> Path:
        """The host folder that is the instance's `/`."""
        vast_id = self.cloud.db.instances.find(ref).vast_id
        assert vast_id is not None and self.sky.hosts is not None
        return self.sky.hosts.root(vast_id)

    def comfy_dir(self, ref: str) -> Path:
        return self.root(ref) / "workspace" / "ComfyUI"

    def settings(self, **env: str) -> Settings:
        return make_settings(self.server, self.base, **_NODE_ENV, **env)

    def with_settings(self, **env: str) -> Cloud:
        config = dataclasses.replace(self.cloud.config, settings=self.settings(**env))
        return Cloud(config, self.cloud.vast, self.cloud.db)

    def events(self, ref: str, *kinds: EventKind) -> list[dict[str, object]]:
        row = self.cloud.db.instances.find(ref)
        return [
            dict(e.detail or {}) for e in self.cloud.db.instances.events(row.id) if e.kind in kinds
        ]

    async def comfy_pids(self, ref: str) -> list[int]:
        """ComfyUI's process ids on the instance (a restart changes them)."""
        procs: list[ProcessInfo] = await ps(self.cloud, ref)
        return sorted(p.pid for p in procs if p.is_comfy)


# simulated seconds: a real ComfyUI start of a second or two is 100-200 of them
_NODE_ENV = {"COMFYFLEET_NODES__RESTART_TIMEOUT": "6000"}


@contextlib.asynccontextmanager
async def open_world(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path, names: Sequence[str]
) -> AsyncIterator[World]:
    """The world with one ready instance per name in `names`."""
    base = tmp_path_factory.mktemp("prepare-world")
    server = ModelServer(shared_dir / "fixtures" / "comfyui-manager")
    with pytest.MonkeyPatch.context() as env:
        # Module-scoped, so before the per-test home: the hosts started here inherit this one.
        home = base / "home"
        for var in list(os.environ):
            if (
                var.startswith(("COMFYFLEET_", "HF_", "CIVITAI_"))
                and var != "COMFYFLEET_SHARED_DIR"
            ):
                env.delenv(var)
        env.setenv("HOME", str(home))
        env.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        env.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        env.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        async with (
            server,
            SandboxVast(base / "sky", speed=SPEED, knobs=VastKnobs(QUICK), hosts=True) as sky,
        ):
            settings = make_settings(server, base, **_NODE_ENV)
            config = CloudConfig(
                "sandbox", sky.url, sky.api_key, sky.clock, base / "data", settings
            )
            async with open_cloud(config) as cloud:
                for name in names:
                    await up(cloud, UpRequest(order="dph_total", name=name), lambda _line: None)
                yield World(server, sky, cloud, base, tuple(names))
