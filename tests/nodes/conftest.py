"""One ready sandbox instance per test module (simulated Vast + a real host over SSH)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from comfyfleet.config import Settings, load_settings
from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services.cloud import Cloud, CloudConfig, open_cloud
from comfyfleet.services.up import UpRequest, up
from comfyfleet.state import InstanceRow

SPEED = 100.0
QUICK = Durations(scheduling=5.0, loading=30.0, cached_loading=10.0, provisioning=30.0, reboot=5.0)


def nodes_settings(base: Path, **extra: str) -> Settings:
    env = {
        "COMFYFLEET_PATHS__CONFIG_DIR": str(base / "config"),
        "COMFYFLEET_PATHS__DATA_DIR": str(base / "data"),
        "COMFYFLEET_PATHS__CACHE_DIR": str(base / "cache"),
        "COMFYFLEET_CATALOG__OFFLINE": "1",
        "COMFYFLEET_VAST__POLL_INTERVAL": "5",
        "COMFYFLEET_VAST__READY_TIMEOUT": "900",
        # simulated seconds: a real ComfyUI start of a second or two is 100-200 of them
        "COMFYFLEET_NODES__RESTART_TIMEOUT": "6000",
        **extra,
    }
    return load_settings(env=env, config_file=base / "none.toml")


@dataclass
class Box:
    """The shared instance: the simulated cloud, our open cloud, its row and host root."""

    sky: SandboxVast
    cloud: Cloud
    row: InstanceRow
    root: Path  # the host's root folder (the instance's "/")
    base: Path

    @property
    def ref(self) -> str:
        return str(self.row.vast_id)

    @property
    def custom_nodes(self) -> Path:
        return self.root / "workspace" / "ComfyUI" / "custom_nodes"

    @property
    def venv_python(self) -> Path:
        return self.root / "venv" / "main" / "bin" / "python"

    def with_settings(self, settings: Settings) -> Cloud:
        """The same cloud (Vast client, database) under other settings."""
        config = dataclasses.replace(self.cloud.config, settings=settings)
        return Cloud(config, self.cloud.vast, self.cloud.db)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def box(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Box]:
    base = tmp_path_factory.mktemp("nodes-box")
    knobs = VastKnobs(QUICK)
    async with SandboxVast(base / "sky", speed=SPEED, knobs=knobs, hosts=True) as sky:
        settings = nodes_settings(base)
        config = CloudConfig("sandbox", sky.url, sky.api_key, sky.clock, base / "data", settings)
        async with open_cloud(config) as cloud:
            result = await up(cloud, UpRequest(order="dph_total", name="studio"), _quiet)
            assert sky.hosts is not None
            yield Box(sky, cloud, result.row, sky.hosts.root(result.instance.id), base)


def _quiet(_line: Any) -> None:
    pass
