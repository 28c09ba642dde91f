"""The cloud a command talks to: the Vast API (real or the sandbox's), its database, its clock.

The CLI builds a `CloudConfig` for the active profile (for the sandbox it reads the running
sandbox's URL, key and speed) and services open it with `open_cloud`. Each profile has its
own database, so sandbox instances never mix with real ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from comfyfleet.config import Settings
from comfyfleet.state import Database, open_database
from comfyfleet.util.clock import Clock
from comfyfleet.vast.client import VastClient


@dataclass(frozen=True)
class CloudConfig:
    """Where the Vast API is and how to reach it; the key is never shown."""

    profile: str
    base_url: str
    api_key: str = field(repr=False)
    clock: Clock
    data_dir: Path  # the profile's own folder: its database, its secrets
    settings: Settings

    @property
    def speed(self) -> float:
        return self.clock.speed


@dataclass
class Cloud:
    """An open Vast client and database for one command."""

    config: CloudConfig
    vast: VastClient
    db: Database

    @property
    def clock(self) -> Clock:
        return self.config.clock

    @property
    def settings(self) -> Settings:
        return self.config.settings


@contextlib.asynccontextmanager
async def open_cloud(config: CloudConfig) -> AsyncIterator[Cloud]:
    """Open the Vast client and the profile's database (migrated on open)."""
    db = open_database(config.settings.db_url, data_dir=config.data_dir, clock=config.clock)
    try:
        async with VastClient(config.api_key, base_url=config.base_url, clock=config.clock) as vast:
            yield Cloud(config, vast, db)
    finally:
        db.close()
