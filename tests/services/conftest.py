"""Services against the simulated Vast cloud, in this test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.config import load_settings
from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services.cloud import Cloud, CloudConfig, open_cloud

QUICK = Durations(scheduling=5.0, loading=30.0, cached_loading=10.0, provisioning=30.0, reboot=5.0)


def settings_for(home: Path, **vast: Any) -> Any:
    env = {f"COMFYFLEET_VAST__{k.upper()}": str(v) for k, v in vast.items()}
    env["COMFYFLEET_PATHS__CONFIG_DIR"] = str(home / "config")
    return load_settings(env=env, config_file=home / "none.toml")


@pytest.fixture
async def sky(tmp_path: Path) -> AsyncIterator[SandboxVast]:
    """A host-less simulated cloud at 200x: fast lifecycles, no processes."""
    knobs = VastKnobs(QUICK)
    async with SandboxVast(tmp_path / "sky", speed=200.0, knobs=knobs) as server:
        yield server


@pytest.fixture
async def cloud(sky: SandboxVast, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = settings_for(tmp_path, poll_interval=5, ready_timeout=600)
    config = CloudConfig("sandbox", sky.url, sky.api_key, sky.clock, tmp_path / "data", settings)
    async with open_cloud(config) as c:
        yield c
