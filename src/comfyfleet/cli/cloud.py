"""The active profile's cloud: real Vast (API key) or the running sandbox (its URL and clock)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import global_options

if TYPE_CHECKING:
    from comfyfleet.config import Settings
    from comfyfleet.services.cloud import Cloud, CloudConfig
    from comfyfleet.services.targets import CloudOpener


def cloud_config(settings: Settings) -> CloudConfig:
    """The CloudConfig of `settings.profile`; errors say how to get a key or a sandbox."""
    from comfyfleet.services.cloud import CloudConfig
    from comfyfleet.util.clock import ScaledClock, SystemClock

    if settings.profile == "sandbox":
        from comfyfleet.errors import SandboxError
        from comfyfleet.sandbox.vast import process

        state_dir = process.default_state_dir(settings)
        running = process.read_running(state_dir)
        if running is None:
            raise SandboxError(
                "the sandbox is not running",
                hint="start it with: comfyfleet sandbox start --detach",
            )
        info = process.server_info(running)
        # Our deadlines, polls and timestamps follow the sandbox's simulated time.
        clock = ScaledClock(float(info["speed"]), start=float(info["now"]))
        return CloudConfig("sandbox", running.url, running.api_key, clock, state_dir, settings)
    from comfyfleet.vast.keys import require_api_key

    found = require_api_key(config_dir=settings.config_dir())
    return CloudConfig(
        "default", settings.vast.base_url, found.value, SystemClock(), settings.data_dir(), settings
    )


def cloud_opener(ctx: typer.Context) -> CloudOpener:
    """A callable opening the profile's cloud (used where a --target may be an instance)."""
    settings = global_options(ctx).settings()

    def opener() -> AbstractAsyncContextManager[Cloud]:
        from comfyfleet.services.cloud import open_cloud

        return open_cloud(cloud_config(settings))

    return opener
