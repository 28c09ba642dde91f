"""Retries, rate limits and error mapping, with answers the simulated cloud cannot script.

The clock records waits instead of sleeping, so every delay is checked exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from vast_helpers import API_KEY, RecordingClock, ScriptedVast, json_response, text_response

from comfyfleet.errors import (
    VastAuthError,
    VastNotFound,
    VastProtocolError,
    VastQuotaExceeded,
    VastRateLimited,
    VastRequestRejected,
    VastServerError,
    VastUnreachable,
)
from comfyfleet.vast.client import VastClient

BUNDLES = "/api/v0/bundles/"
OK = json_response(200, {"offers": []})


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
def server() -> ScriptedVast:
    return ScriptedVast()


@pytest.fixture
async def vast(server: ScriptedVast, clock: RecordingClock) -> AsyncIterator[VastClient]:
    async with VastClient(API_KEY, transport=server.transport(), clock=clock) as client:
        yield client


async def test_requests_carry_the_key_only_in_the_bearer_header(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on("POST", BUNDLES, OK)
    await vast.search_offers({"verified": {"eq": True}})
    (request,) = server.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in str(request.url)
    assert request.url.host == "console.vast.ai" and request.url.scheme == "https"
    assert request.headers["Content-Type"] == "application/json"
    assert server.body(request) == {"verified": {"eq": True}}


async def test_502_503_then_200_is_retried_with_backoff(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    server.on("POST", BUNDLES, text_response(502, "Bad Gateway"), text_response(503, "x"), OK)
    assert await vast.search_offers({}) == []
    assert len(server.requests) == 3
    assert clock.sleeps == pytest.approx([0.15, 0.225])


async def test_retries_is_the_total_number_of_attempts(
    server: ScriptedVast, clock: RecordingClock
) -> None:
    server.on("POST", BUNDLES, text_response(504, "Gateway Timeout"))
    async with VastClient(API_KEY, transport=server.transport(), clock=clock, retries=5) as vast:
        with pytest.raises(VastServerError) as info:
            await vast.search_offers({})
    assert len(server.requests) == 5
    assert clock.sleeps == pytest.approx([0.15 * 1.5**n for n in range(4)])
    assert info.value.status == 504 and info.value.retryable


async def test_retry_after_is_honoured(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    limited = text_response(429, "API requests too frequent", {"Retry-After": "2"})
    server.on("POST", BUNDLES, limited, OK)
    await vast.search_offers({})
    assert clock.sleeps == [2.0]


async def test_retry_after_over_60_seconds_means_no_retry(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    server.on("POST", BUNDLES, text_response(429, "slow down", {"Retry-After": "120"}), OK)
    with pytest.raises(VastRateLimited):
        await vast.search_offers({})
    assert len(server.requests) == 1 and clock.sleeps == []


async def test_plain_text_429_after_every_retry(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    server.on(
        "POST", BUNDLES, text_response(429, "API requests too frequent endpoint threshold=4.5")
    )
    with pytest.raises(VastRateLimited) as info:
        await vast.search_offers({})
    assert "threshold=4.5" in info.value.message and info.value.retryable
    assert len(server.requests) == 3 and len(clock.sleeps) == 2


async def test_search_quota_is_never_retried_and_says_when_it_resets(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    reset = datetime(2027, 3, 4, 0, 0, tzinfo=UTC).timestamp()
    quota = json_response(
        429,
        {"success": False, "error": "search_quota_exceeded", "msg": "Daily search quota exceeded"},
        {"X-RateLimit-Reset": str(int(reset))},
    )
    server.on("POST", BUNDLES, quota, OK)
    with pytest.raises(VastQuotaExceeded) as info:
        await vast.search_offers({})
    assert len(server.requests) == 1 and clock.sleeps == []
    assert info.value.reset_at == reset and not info.value.retryable
    assert "2027-03-04 00:00 UTC" in str(info.value)


async def test_transport_errors_are_retried_then_mapped(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    server.on(
        "GET",
        "/api/v0/users/current/",
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        json_response(200, {"id": 1, "credit": 3.5}),
    )
    user = await vast.current_user()
    assert user.credit == 3.5 and len(clock.sleeps) == 2

    server.on("GET", "/api/v0/ssh/", httpx.ConnectError("connection refused"))
    with pytest.raises(VastUnreachable) as info:
        await vast.ssh_keys()
    assert info.value.exit_code == 7 and info.value.retryable
    assert "console.vast.ai" in info.value.message


@pytest.mark.parametrize(
    ("answer", "error", "fragment"),
    [
        (
            json_response(
                401, {"success": False, "error": "auth_error", "msg": "Invalid user key"}
            ),
            VastAuthError,
            "Invalid user key",
        ),
        (text_response(401, "Unauthorized"), VastAuthError, "Unauthorized"),
        (
            json_response(404, {"msg": "Session expired. Please log in again."}),
            VastAuthError,
            "Session expired",
        ),
        (
            json_response(403, {"error": "not_authorized", "msg": "key lacks permission"}),
            VastAuthError,
            "not_authorized",
        ),
        (
            json_response(400, {"error": "invalid_request", "msg": "Invalid json body"}),
            VastRequestRejected,
            "Invalid json body",
        ),
        (
            json_response(404, {"error": "not_found", "msg": "no such thing"}),
            VastNotFound,
            "no such thing",
        ),
        (json_response(500, {"detail": "boom"}), VastServerError, "boom"),
        (
            httpx.Response(302, headers={"Location": "https://x.example/login?next=1"}),
            VastProtocolError,
            "redirected to https://x.example/login",
        ),
    ],
)
async def test_error_mapping(
    server: ScriptedVast, vast: VastClient, answer: httpx.Response, error: type, fragment: str
) -> None:
    server.on("GET", "/api/v0/users/current/", answer)
    with pytest.raises(error) as info:
        await vast.current_user()
    assert fragment in str(info.value)
    assert "show the current user" in str(info.value)
    if error is VastAuthError:
        assert "comfyfleet login" in str(info.value) and "--profile sandbox" in str(info.value)


async def test_success_false_in_a_200_is_an_error(server: ScriptedVast, vast: VastClient) -> None:
    server.on(
        "PUT",
        "/api/v0/instances/5/",
        json_response(200, {"success": False, "error": "missing_billing", "msg": "add credit"}),
    )
    with pytest.raises(VastRequestRejected, match="missing_billing add credit"):
        await vast.start(5)


async def test_not_json_is_a_protocol_error(server: ScriptedVast, vast: VastClient) -> None:
    page = httpx.Response(200, content=b"<html>login</html>", headers={"Content-Type": "text/html"})
    server.on("POST", BUNDLES, page)
    with pytest.raises(VastProtocolError) as info:
        await vast.search_offers({})
    assert info.value.hint is not None and "check the URL" in info.value.hint
