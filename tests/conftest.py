"""Test world: a temporary home for every test, the shared fixtures, and sandbox servers."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    explicit = os.environ.get("COMFYFLEET_SHARED_DIR")
    path = Path(explicit) if explicit else REPO.parent / "shared"
    if not (path / "fixtures").is_dir():
        pytest.fail(
            f"shared fixtures not found at {path}: check out the steering repo's shared/ next to "
            "this repository or set COMFYFLEET_SHARED_DIR"
        )
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_dir()


@pytest.fixture(scope="session")
def comfy_fixtures(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "comfyui"


@pytest.fixture(scope="session")
def object_info_full(comfy_fixtures: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((comfy_fixtures / "GET_object_info_full.json").read_text())
    return data


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Never touch the user's real home: temporary HOME, XDG dirs and comfyfleet dirs."""
    home = tmp_path_factory.mktemp("home")
    for var in list(os.environ):
        if var.startswith("COMFYFLEET_") and var != "COMFYFLEET_SHARED_DIR":
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("VAST_API_KEY", raising=False)
    # never read or write the developer's real OS keyring
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("COMFYFLEET_CONFIG", str(home / ".config" / "comfyfleet" / "config.toml"))
    # node/model catalogs: shipped copies, never the internet (tests/catalog/standins.py serves
    # stand-ins; its env() turns this off)
    monkeypatch.setenv("COMFYFLEET_CATALOG__OFFLINE", "1")
    yield home


@pytest.fixture
async def comfy_sandbox(tmp_path: Path) -> AsyncIterator[Any]:
    """A sandbox ComfyUI on a free loopback port, in this test's event loop."""
    from comfyfleet.sandbox.comfy.server import SandboxComfy

    async with SandboxComfy(root=tmp_path / "comfy-root", speed=50.0) as server:
        yield server


@pytest.fixture
def comfy_sandbox_thread(tmp_path: Path) -> Iterator[Any]:
    """A sandbox ComfyUI in a background thread, for tests that drive the CLI as a subprocess."""
    from comfyfleet.sandbox.comfy.server import SandboxComfy

    handle = SandboxComfy(root=tmp_path / "comfy-root", speed=50.0).start_in_thread()
    try:
        yield handle
    finally:
        handle.stop()
