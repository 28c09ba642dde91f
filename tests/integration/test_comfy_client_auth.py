"""A token-protected ComfyUI (a proxy that checks the bearer header) on loopback.

The small aiohttp app answers like ComfyUI behind Vast's proxy: 401 without the right
`Authorization: Bearer` header, on HTTP and on the WebSocket upgrade alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import ComfySettings
from comfyfleet.errors import ComfyAuthError
from comfyfleet.models import events as ev
from comfyfleet.util.clock import ScaledClock

TOKEN = "proxy-token-7f3a"


@web.middleware
async def bearer_only(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return web.Response(status=401, text="Unauthorized")
    return await handler(request)


async def system_stats(request: web.Request) -> web.Response:
    system = {
        "os": "posix",
        "comfyui_version": "0.3.64",
        "python_version": "3.11",
        "pytorch_version": "2",
        "ram_total": 1,
        "ram_free": 1,
    }
    return web.json_response({"system": system, "devices": []})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sid = request.query.get("clientId", "")
    await ws.send_json(
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}}
    )
    first = await ws.receive()
    hello = json.loads(first.data)
    if hello.get("type") == "feature_flags":
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    await ws.close()
    return ws


@pytest.fixture
async def proxy_url() -> AsyncIterator[str]:
    app = web.Application(middlewares=[bearer_only])
    app.router.add_get("/system_stats", system_stats)
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


SETTINGS = ComfySettings(ws_reconnect_attempts=0, poll_interval=0.05)


async def test_right_token_opens_http_and_events(proxy_url: str) -> None:
    async with ComfyClient(proxy_url, token=TOKEN, settings=SETTINGS) as client:
        stats = await client.system_stats()
        assert stats.comfyui_version == "0.3.64"
        async with client.events() as stream:
            first = await stream.next_event(5)
            second = await stream.next_event(5)
    assert first == ev.Status(0, client.client_id)
    assert isinstance(second, ev.FeatureFlags) and second.supports_preview_metadata


async def test_token_from_settings(proxy_url: str) -> None:
    settings = ComfySettings(token=TOKEN)
    async with ComfyClient(proxy_url, settings=settings) as client:
        assert (await client.system_stats()).os == "posix"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_token(proxy_url: str, token: str | None) -> None:
    async with ComfyClient(
        proxy_url, token=token, settings=SETTINGS, clock=ScaledClock(100)
    ) as client:
        with pytest.raises(ComfyAuthError) as http_err:
            await client.system_stats()
        with pytest.raises(ComfyAuthError) as ws_err:
            async with client.events():
                pass
    for err in (http_err.value, ws_err.value):
        assert "401" in str(err) and proxy_url in str(err)
        assert err.hint and "--token" in err.hint
        assert TOKEN not in str(err) and (token is None or token not in str(err))
