"""Vast test helpers: a clock that records waits, a scripted server, fixture loading.

`ScriptedVast` is an httpx MockTransport handler for what the simulated cloud cannot show
(exact Retry-After values, a 502-then-200 sequence, an answer that echoes the key, a missing
v1 route). Each route answers from a queue; the last answer repeats. Every request is kept.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API_KEY = "0123456789abcdef" * 4  # the shape of a real Vast key: 64 hex characters

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def load(vast_fixtures: Path, name: str) -> Any:
    return json.loads((vast_fixtures / name).read_text())


class RecordingClock:
    """A Clock whose sleeps return at once and are recorded (in this clock's seconds)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.sleeps: list[float] = []
        self._now = start
        self._mono = 0.0

    @property
    def speed(self) -> float:
        return 1.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        self.sleeps.append(seconds)
        self._now += seconds
        self._mono += seconds
        await asyncio.sleep(0)
        return bool(wake and wake.is_set())


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=text.encode(), headers={"Content-Type": "text/plain", **(headers or {})}
    )


@dataclass
class ScriptedVast:
    """Routes `(METHOD, path regex)` -> queued answers; unmatched requests get a 599."""

    routes: list[tuple[str, re.Pattern[str], list[Answer]]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Answer) -> ScriptedVast:
        self.routes.append((method, re.compile(f"^{path}$"), list(answers)))
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for method, pattern, answers in self.routes:
            if method == request.method and pattern.match(request.url.path):
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, Exception):
                    raise answer
                if callable(answer):
                    return answer(request)
                return answer
        return text_response(599, f"no scripted route for {request.method} {request.url.path}")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def calls(self, method: str, path_regex: str) -> list[httpx.Request]:
        pattern = re.compile(f"^{path_regex}$")
        return [r for r in self.requests if r.method == method and pattern.match(r.url.path)]

    @staticmethod
    def body(request: httpx.Request) -> Any:
        return json.loads(request.content)


class AdvancingClock(RecordingClock):
    """A recording clock whose sleeps also move a ManualClock (the simulated cloud's time)."""

    def __init__(self, cloud_clock: Any) -> None:
        super().__init__(cloud_clock.now())
        self.cloud_clock = cloud_clock

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        self.cloud_clock.advance(seconds)
        return await super().sleep(seconds, wake)
