"""The API key (and the tokens we send) never show in an error, a repr or a log record.

A loopback server that echoes what it receives (headers, bodies) into its error answers plays
a Vast that misbehaves in the worst way; every record of every logger is captured at DEBUG.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from vast_helpers import API_KEY, RecordingClock, ScriptedVast

from comfyfleet.errors import VastError
from comfyfleet.util.redact import redact
from comfyfleet.vast.client import VastClient

WEB_PASSWORD = "web-password-9f8e7d6c5b4a"


async def _echo(request: web.Request) -> web.Response:
    seen = {
        "auth": request.headers.get("Authorization", ""),
        "query": request.query_string,
        "body": await request.text(),
    }
    path = request.path
    if path.startswith("/api/v0/users/current"):
        return web.json_response(
            {"success": False, "error": "auth_error", "msg": f"Invalid user key {seen['auth']}"},
            status=401,
        )
    if path.startswith("/api/v0/asks/"):
        return web.Response(status=400, text=f"bad create: {seen['body']}")
    if path.startswith("/api/v0/bundles"):
        return web.Response(status=503, text=f"overloaded for {seen['auth']}")
    if path.startswith("/api/v0/instances/request_logs/"):
        host = request.host
        url = f"http://{host}/result/x.log?token={API_KEY}&X-Amz-Signature=abcdef0123456789"
        return web.json_response({"success": True, "result_url": url})
    if path.startswith("/result/"):
        return web.Response(status=404, text=f"not yet {seen['auth']} {seen['query']}")
    return web.json_response({"msg": f"no route {seen}"}, status=404)


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _all_text(error: BaseException) -> str:
    return "\n".join(
        [str(error), repr(error), *traceback.format_exception(error), str(error.__dict__)]
    )


async def test_key_and_tokens_never_leak(echo_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    clock = RecordingClock()
    async with VastClient(API_KEY, base_url=echo_url, clock=clock) as vast:
        assert API_KEY not in repr(vast) + repr(vast._http)
        calls = [
            vast.current_user(),
            vast.search_offers({"gpu_name": {"eq": "RTX 4090"}}),
            vast.create_instance(
                1,
                image="vastai/comfy:v0.8.2-cuda-12.9-py312",
                disk_gb=40,
                env={"WEB_PASSWORD": WEB_PASSWORD},
                ports=[8188],
            ),
            vast.logs(5, tries=3),
            vast.show_instance(77),
        ]
        for call in calls:
            try:
                await call
            except VastError as exc:
                errors.append(exc)
    assert len(errors) == 4  # show_instance answered "gone"
    for error in errors:
        text = _all_text(error)
        assert API_KEY not in text
        assert WEB_PASSWORD not in text
        assert "abcdef0123456789" not in text
    assert "***" in str(errors[0])  # the echoed key was there, and masked
    # every record but the echo server's own access log
    records = [r for r in caplog.records if not r.name.startswith("aiohttp")]
    assert {"httpx", "comfyfleet.vast.http"} <= {r.name for r in records}
    for record in records:
        text = record.getMessage() + (record.exc_text or "") + str(record.args)
        assert API_KEY not in text and WEB_PASSWORD not in text


async def test_transport_error_text_is_redacted() -> None:
    server = ScriptedVast().on(
        "GET", "/api/v0/ssh/", httpx.ConnectError(f"proxy said no to Bearer {API_KEY}")
    )
    async with VastClient(API_KEY, transport=server.transport(), clock=RecordingClock()) as vast:
        with pytest.raises(VastError) as info:
            await vast.ssh_keys()
    assert API_KEY not in _all_text(info.value)


def test_redact_masks_registered_and_credential_looking_text() -> None:
    secret = "a-token-registered-nowhere-1234"
    text = (
        f"Bearer {secret} url http://u:pw123456@host/p?api_key={secret}&x=1 "
        f"token={secret} X-Amz-Signature=00ff00ff00ff plain {secret}"
    )
    clean = redact(text, extra=[secret])
    assert secret not in clean and "pw123456" not in clean and "00ff00ff00ff" not in clean
    assert "x=1" in clean and "host/p" in clean


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("a 1 true", extra=["1", "true"]) == "a 1 true"
    text = "HTTP basic authentication failed; next_token=abc; bearer tokens expected"
    assert redact(text) == text
    assert redact("Authorization: Basic dXNlcjpwYXNzd29yZA==") == "Authorization: Basic ***"


def test_redacting_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    from comfyfleet.util.redact import RedactingFilter, register_secret

    secret = "only-in-this-test-0a1b2c3d"
    register_secret(secret)
    logger = logging.getLogger("comfyfleet.test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="comfyfleet.test.redact"):
        logger.info("got %s", json.dumps({"key": secret}))
        try:
            raise RuntimeError(secret)
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    assert secret not in text and "***" in text
