"""One world per test module: a model/catalog server and one ready sandbox instance, `box`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .world import World, open_world


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> AsyncIterator[World]:
    async with open_world(tmp_path_factory, shared_dir, ["box"]) as made:
        yield made
