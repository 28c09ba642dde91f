"""Error mapping and retries at the client's boundary: closed ports, statuses, lost answers.

Servers here are httpx transports written in the test (a 401 proxy, a flaky gateway, a
server that queues a prompt and then loses the connection before answering) and a loopback
port nobody listens on.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.vast.vast_helpers import RecordingClock

from comfyfleet.comfy.client import LANDING_WINDOW, ComfyClient
from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyAuthError,
    ComfyProtocolError,
    ComfyRequestRejected,
    ComfyUnreachable,
    UsageError,
)
from comfyfleet.models.comfy import FileRef
from comfyfleet.util.clock import Clock, ScaledClock

TOKEN = "s3cr3t-token-value"
FAST = ComfySettings(poll_interval=0.05, ws_reconnect_attempts=2, connect_timeout=2.0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], *, clock: Clock | None = None
) -> ComfyClient:
    return ComfyClient(
        f"http://127.0.0.1:{closed_port()}",
        token=TOKEN,
        transport=httpx.MockTransport(handler),
        settings=FAST,
        clock=clock or ScaledClock(1000.0),
    )


async def test_refused_connection_names_the_server() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with ComfyClient(url, token=TOKEN, settings=FAST, clock=ScaledClock(1000.0)) as client:
        with pytest.raises(ComfyUnreachable) as caught:
            await client.system_stats()
        err = caught.value
        assert url in str(err) and "connection refused" in str(err)
        assert err.hint and "tunnel" in err.hint and err.retryable and err.exit_code == 7
        assert TOKEN not in str(err)
        with pytest.raises(ComfyUnreachable, match="event stream") as ws_err:
            async with client.events():
                pass
        assert url in str(ws_err.value) and TOKEN not in str(ws_err.value)
        with pytest.raises(ComfyUnreachable):
            await client.queue_prompt({"1": {"class_type": "SaveImage", "inputs": {}}})
        with pytest.raises(ComfyUnreachable):
            await client.wait_for("some-prompt", timeout=30)


def test_bad_urls_are_usage_errors() -> None:
    for url in ("localhost:8188", "ftp://host", "http://"):
        with pytest.raises(UsageError):
            ComfyClient(url)


async def test_token_is_sent_and_never_shown() -> None:
    seen: list[str | None] = []

    def proxy(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, text="Unauthorized")

    client = mock_client(proxy)
    async with client:
        with pytest.raises(ComfyAuthError) as caught:
            await client.system_stats()
    assert seen == [f"Bearer {TOKEN}"], "auth failures are not retried"
    err = caught.value
    assert err.hint and "--token" in err.hint and "COMFYFLEET_COMFY__TOKEN" in err.hint
    assert TOKEN not in str(err) and TOKEN not in repr(client)


async def test_forbidden_path_is_not_an_auth_problem() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/view":
            return httpx.Response(403)
        return httpx.Response(403, text="Forbidden")

    async with mock_client(server) as client:
        with pytest.raises(ComfyRequestRejected) as caught:
            await client.view(FileRef("x.png", "../..", "input"))
        assert caught.value.status == 403 and not isinstance(caught.value, ComfyAuthError)
        with pytest.raises(ComfyAuthError):
            await client.queue()


async def test_gateway_errors_are_retried_for_gets_only() -> None:
    calls: dict[str, int] = {}

    def gateway(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] = calls.get(request.url.path, 0) + 1
        if request.url.path == "/prompt" and request.method == "GET":
            if calls["/prompt"] < 3:
                return httpx.Response(502, text="Bad Gateway")
            return httpx.Response(200, json={"exec_info": {"queue_remaining": 4}})
        return httpx.Response(503, text="Service Unavailable")

    async with mock_client(gateway) as client:
        assert await client.queue_remaining() == 4
        assert calls["/prompt"] == 3
        with pytest.raises(ComfyUnreachable, match="503"):
            await client.interrupt()
        assert calls["/interrupt"] == 1, "a POST is not repeated blindly"
        with pytest.raises(ComfyUnreachable, match="503"):
            await client.system_stats()
        assert calls["/system_stats"] == 4


async def test_unexpected_bodies_are_protocol_errors() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/system_stats":
            return httpx.Response(200, html="<html>login</html>")
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": "nope"})
        return httpx.Response(500, text="500 Internal Server Error\n\nServer got itself in trouble")

    async with mock_client(server) as client:
        with pytest.raises(ComfyProtocolError, match="not JSON") as html:
            await client.system_stats()
        assert html.value.hint and "web page" in html.value.hint
        with pytest.raises(ComfyProtocolError, match="queue_running"):
            await client.queue()
        with pytest.raises(ComfyProtocolError, match="Server got itself in trouble"):
            await client.queue_prompt({})


class LossyServer:
    """Queues prompts like ComfyUI; `lose` says which POSTs break before their answer."""

    def __init__(
        self, lose: Callable[[int], type[httpx.TransportError] | None], *, shows_after: int = 0
    ) -> None:
        self.lose = lose
        self.shows_after = shows_after  # /queue reads before a queued prompt appears in them
        self.posts = 0
        self.queue_reads = 0
        self.queued: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/queue":
            self.queue_reads += 1
            shown = self.queued if self.queue_reads > self.shows_after else []
            items = [[i, b["prompt_id"], b["prompt"], {}, []] for i, b in enumerate(shown)]
            return httpx.Response(200, json={"queue_running": [], "queue_pending": items})
        if path.startswith("/history/"):
            return httpx.Response(200, json={})
        assert path == "/prompt" and request.method == "POST"
        self.posts += 1
        failure = self.lose(self.posts)
        body = json.loads(request.content)
        if failure is httpx.ConnectError:
            raise failure("connection refused", request=request)
        self.queued.append(body)
        if failure is not None:
            raise failure("connection reset after the prompt was queued", request=request)
        return httpx.Response(
            200, json={"prompt_id": body["prompt_id"], "number": 7, "node_errors": {}}
        )


PROMPT = {"1": {"class_type": "SaveImage", "inputs": {}}}


async def test_lost_answer_is_not_posted_twice() -> None:
    server = LossyServer(lambda n: httpx.ReadError if n == 1 else None)
    async with mock_client(server) as client:
        accepted = await client.queue_prompt(PROMPT)
    assert server.posts == 1 and len(server.queued) == 1
    assert accepted.existing and accepted.prompt_id == server.queued[0]["prompt_id"]


async def test_a_slow_server_gets_time_to_queue_before_a_second_post() -> None:
    # The answer timed out while ComfyUI was still validating: the prompt shows in the queue
    # only later (here after 8 reads, ~10 s of the client's clock), and must not be sent again.
    server = LossyServer(lambda n: httpx.ReadTimeout if n == 1 else None, shows_after=8)
    clock = RecordingClock()  # time moves by the client's sleeps only: no race with real time
    async with mock_client(server, clock=clock) as client:
        accepted = await client.queue_prompt(PROMPT, prompt_id="job-slow")
    assert server.posts == 1 and accepted.existing and accepted.prompt_id == "job-slow"
    assert server.queue_reads == 9 and sum(clock.sleeps) < LANDING_WINDOW
    # One that never shows is posted again once the window has passed, not before.
    never = LossyServer(lambda n: httpx.ReadTimeout if n == 1 else None, shows_after=10**6)
    clock = RecordingClock()
    async with mock_client(never, clock=clock) as client:
        await client.queue_prompt(PROMPT, prompt_id="job-lost")
    assert never.posts == 2 and sum(clock.sleeps) >= LANDING_WINDOW


async def test_post_that_never_landed_is_sent_again() -> None:
    server = LossyServer(lambda n: httpx.ConnectError if n == 1 else None)
    async with mock_client(server) as client:
        accepted = await client.queue_prompt(PROMPT, prompt_id="job-42")
    assert server.posts == 2 and [b["prompt_id"] for b in server.queued] == ["job-42"]
    assert accepted.prompt_id == "job-42" and accepted.number == 7 and not accepted.existing


async def test_known_prompt_id_is_not_queued_again() -> None:
    server = LossyServer(lambda n: None)
    async with mock_client(server) as client:
        first = await client.queue_prompt(PROMPT, prompt_id="job-43")
        again = await client.queue_prompt(PROMPT, prompt_id="job-43", resubmit=True)
    assert server.posts == 1 and not first.existing and again.existing


async def test_unreadable_upload_source_is_a_usage_error(tmp_path: Path) -> None:
    async with mock_client(lambda r: httpx.Response(500)) as client:
        with pytest.raises(UsageError, match="cannot read"):
            await client.upload_image(tmp_path / "missing.png")
