"""Fixtures for the Vast client tests (helpers live in vast_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def vast_fixtures(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "vast"
