"""Fixtures of the host tests: the wheelhouse cache and one host per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sandbox_host.hostkit import RunningHost, launch


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-cache")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Iterator[RunningHost]:
    """One host shared by a module's tests (stopped at the end of the module)."""
    running = launch(tmp_path_factory.mktemp("host"), wheel_cache)
    try:
        yield running
    finally:
        running.process.stop()
