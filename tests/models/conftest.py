"""One ready sandbox instance per module, a model server it downloads from, and settings that
point every hub at that server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from tests.models.modelserver import ModelServer

from comfyfleet.config import Settings, load_settings
from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services.cloud import Cloud, CloudConfig, open_cloud
from comfyfleet.services.up import UpRequest, up

QUICK = Durations(scheduling=5.0, loading=30.0, cached_loading=10.0, provisioning=30.0, reboot=5.0)
HF_TOKEN = "hf_test_0123456789abcdefSECRET"
CIVITAI_TOKEN = "civitai-test-token-9876543210-SECRET"


def blob(seed: int, size: int) -> bytes:
    """Deterministic bytes that differ per seed (no two test files share content)."""
    chunk = bytes((seed * 131 + i * 7) % 251 for i in range(4096))
    return (chunk * (size // len(chunk) + 1))[:size]


@dataclass
class World:
    server: ModelServer
    sky: SandboxVast
    cloud: Cloud
    ref: str  # the instance's name
    base: Path

    @property
    def host_root(self) -> Path:
        assert self.cloud.db.instances.find(self.ref).vast_id is not None
        root = self.sky._host_root(int(self.cloud.db.instances.find(self.ref).vast_id or 0))
        assert root is not None
        return root

    @property
    def comfy_dir(self) -> Path:
        return self.host_root / "workspace" / "ComfyUI"

    def settings(self, **env: str) -> Settings:
        return make_settings(self.server, self.base, **env)


def make_settings(server: ModelServer, base: Path, **env: str) -> Settings:
    values = {
        "COMFYFLEET_PATHS__CONFIG_DIR": str(base / "config"),
        "COMFYFLEET_PATHS__CACHE_DIR": str(base / "cache"),
        "COMFYFLEET_VAST__POLL_INTERVAL": "5",
        "COMFYFLEET_VAST__READY_TIMEOUT": "900",
        "COMFYFLEET_DOWNLOADS__STALL_TIMEOUT": "30",
        **server.env(base / "catalog-cache"),
        **env,
    }
    return load_settings(env=values, config_file=base / "none.toml")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> AsyncIterator[World]:
    """A model server and a sandbox cloud with one ready instance named `box`."""
    base = tmp_path_factory.mktemp("models-world")
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
        env.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        env.setenv("HOME", str(home))
        env.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        env.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        env.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        async with (
            server,
            SandboxVast(base / "sky", speed=200.0, knobs=VastKnobs(QUICK), hosts=True) as sky,
        ):
            settings = make_settings(server, base)
            config = CloudConfig(
                "sandbox", sky.url, sky.api_key, sky.clock, base / "data", settings
            )
            async with open_cloud(config) as cloud:
                await up(cloud, UpRequest(order="dph_total", name="box"), lambda _line: None)
                yield World(server, sky, cloud, "box", base)


def grep_tree(root: Path, needle: bytes) -> list[Path]:
    """Files under `root` whose bytes hold `needle` (symlinks and sockets skipped)."""
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found
