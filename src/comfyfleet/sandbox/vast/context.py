"""What the API handlers share: the world, the knobs, the clock, and the server's callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from comfyfleet.sandbox.vast.knobs import VastKnobs
from comfyfleet.sandbox.vast.world import World
from comfyfleet.util.clock import Clock


@dataclass
class LogResult:
    """A log prepared by request_logs, served at its result_url once "uploaded"."""

    text: str
    not_ready_polls: int


@dataclass
class Context:
    world: World
    knobs: VastKnobs
    clock: Clock
    started_at: float  # real epoch seconds when this server started
    version: str
    hosts: str  # "process" (real host processes) or "none" (made-up ports)
    base_url: str = ""
    host_root: Callable[[int], Path | None] = lambda _id: None
    changed: Callable[[], None] = lambda: None  # after a request changed the world
    shutdown: Callable[[], None] = lambda: None
    results: dict[str, LogResult] = field(default_factory=dict)

    def result_url(self, token: str) -> str:
        return f"{self.base_url}/__sandbox/results/{token}.log"


CTX = web.AppKey("comfyfleet_vast_context", Context)
