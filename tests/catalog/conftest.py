"""Catalog tests: settings pointing every catalog at a loopback stand-in, or offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.catalog.standins import Standin

from comfyfleet.config import Settings, load_settings


@pytest.fixture(scope="session")
def manager_fixtures(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "comfyui-manager"


def make_settings(home: Path, **env: str) -> Settings:
    """Settings from `env` only (no config file), with config and cache under `home`."""
    base = {
        "COMFYFLEET_PATHS__CONFIG_DIR": str(home / "config"),
        "COMFYFLEET_PATHS__CACHE_DIR": str(home / "cache"),
    }
    return load_settings(env={**base, **env}, config_file=home / "none.toml")


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """Shipped catalogs only: nothing is asked over the network."""
    return make_settings(tmp_path, COMFYFLEET_CATALOG__OFFLINE="1")


@pytest.fixture
async def standin(manager_fixtures: Path) -> AsyncIterator[Standin]:
    async with Standin(manager_fixtures) as server:
        yield server


@pytest.fixture
def standin_settings(standin: Standin, tmp_path: Path) -> Any:
    """Build settings pointing at the stand-in; keyword arguments add COMFYFLEET_* vars."""

    def build(**extra: str) -> Settings:
        return make_settings(tmp_path, **{**standin.env(tmp_path / "catalog-cache"), **extra})

    return build
