"""Instance calls on the wire: request shapes, create failures, paging, idempotent destroy, logs.

A scripted server stands in where the simulated cloud has no knob for the answer (a create
that fails but reports a contract, a server without the v1 list, a result URL that never
becomes ready).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from vast_helpers import API_KEY, RecordingClock, ScriptedVast, json_response, load, text_response

from comfyfleet.errors import (
    OfferUnavailable,
    UsageError,
    VastCreateFailed,
    VastLogsUnavailable,
    VastNotFound,
    VastRateLimited,
    VastRequestRejected,
    VastUnreachable,
)
from comfyfleet.vast.client import VastClient

ASK = r"/api/v0/asks/\d+/"
IMAGE = "vastai/comfy:v0.8.2-cuda-12.9-py312"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host"


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
def server() -> ScriptedVast:
    return ScriptedVast()


@pytest.fixture
async def vast(server: ScriptedVast, clock: RecordingClock) -> AsyncIterator[VastClient]:
    async with VastClient(
        API_KEY, base_url="http://127.0.0.1:9", transport=server.transport(), clock=clock
    ) as client:
        yield client


async def _create(vast: VastClient, **extra: object) -> int:
    return await vast.create_instance(
        20156685,
        image=IMAGE,
        disk_gb=80,
        env={"WEB_PASSWORD": "pw-0123456789", "PROVISIONING_SCRIPT": "https://x.invalid/p.sh"},
        ports=[22, 8188, 1111],
        onstart="entrypoint.sh",
        label="comfyfleet:manual:1234",
        runtype="jupyter_direc ssh_direc ssh_proxy",
        **extra,  # type: ignore[arg-type]
    )


async def test_create_body_as_the_official_client_sends_it(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on("PUT", ASK, json_response(200, {"success": True, "new_contract": 31000002}))
    assert await _create(vast) == 31000002
    (request,) = server.requests
    assert request.url.path == "/api/v0/asks/20156685/"
    body = server.body(request)
    assert body["client_id"] == "me" and body["image"] == IMAGE and body["disk"] == 80.0
    assert body["env"] == {
        "-p 22:22": "1",
        "-p 8188:8188": "1",
        "-p 1111:1111": "1",
        "WEB_PASSWORD": "pw-0123456789",
        "PROVISIONING_SCRIPT": "https://x.invalid/p.sh",
    }
    assert body["runtype"] == "jupyter_direc ssh_direc ssh_proxy"
    assert (body["onstart"], body["label"], body["price"]) == (
        "entrypoint.sh",
        "comfyfleet:manual:1234",
        None,
    )
    assert body["cancel_unavail"] is True and body["image_login"] is None


async def test_create_error_that_reports_a_contract_carries_its_id(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on(
        "PUT",
        ASK,
        json_response(500, {"success": False, "error": "internal", "new_contract": 31000009}),
    )
    with pytest.raises(VastCreateFailed) as info:
        await _create(vast)
    assert info.value.created_instance_id == 31000009 and not info.value.outcome_unknown
    assert "31000009" in str(info.value) and "destroy" in str(info.value)
    assert len(server.requests) == 1  # never repeated


async def test_create_success_false_with_contract(server: ScriptedVast, vast: VastClient) -> None:
    server.on("PUT", ASK, json_response(200, {"success": False, "new_contract": 31000010}))
    with pytest.raises(VastCreateFailed) as info:
        await _create(vast)
    assert info.value.created_instance_id == 31000010


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_offer_is_offer_unavailable(
    server: ScriptedVast, vast: VastClient, status: int
) -> None:
    answer = {
        "success": False,
        "error": "no_such_ask",
        "msg": "error 404/3603: no_such_ask Instance type by id 20156685 is not available.",
        "ask_id": 20156685,
    }
    server.on("PUT", ASK, json_response(status, answer))
    with pytest.raises(OfferUnavailable) as info:
        await _create(vast)
    assert info.value.created_instance_id is None and info.value.retryable
    assert "20156685" in str(info.value) and "search again" in str(info.value)


async def test_a_plain_text_404_on_create_is_offer_unavailable(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on("PUT", ASK, text_response(404, "404: Not Found"))
    with pytest.raises(OfferUnavailable):
        await _create(vast)


@pytest.mark.parametrize(
    "answer", [text_response(502, "Bad Gateway"), httpx.ReadError("connection reset")]
)
async def test_create_with_unknown_outcome_is_not_repeated(
    server: ScriptedVast, vast: VastClient, answer: httpx.Response | Exception
) -> None:
    server.on("PUT", ASK, answer, json_response(200, {"success": True, "new_contract": 1}))
    with pytest.raises(VastCreateFailed) as info:
        await _create(vast)
    assert info.value.outcome_unknown and info.value.created_instance_id is None
    assert "label" in str(info.value)
    assert len(server.requests) == 1


async def test_create_is_retried_when_vast_cannot_have_acted(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    server.on(
        "PUT",
        ASK,
        text_response(429, "API requests too frequent endpoint threshold=4.5"),
        httpx.ConnectError("refused"),
        json_response(200, {"success": True, "new_contract": 31000011}),
    )
    assert await _create(vast) == 31000011
    assert len(server.requests) == 3 and len(clock.sleeps) == 2


async def test_create_rate_limited_to_the_end_is_not_a_create_failure(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on("PUT", ASK, text_response(429, "API requests too frequent"))
    with pytest.raises(VastRateLimited):
        await _create(vast)


async def test_create_rejected_arguments(server: ScriptedVast, vast: VastClient) -> None:
    server.on("PUT", ASK, json_response(400, {"error": "invalid_args", "msg": "disk too small"}))
    with pytest.raises(VastRequestRejected, match="disk too small"):
        await _create(vast)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ports": [0]}, "TCP port"),
        ({"env": {"-p 80:80": "1"}}, "not valid"),
        ({"env": {"BIG": "x" * 300}}, "256"),
        ({"runtype": "ssh turbo"}, "runtype"),
        ({"disk_gb": 0}, "disk"),
        ({"image": "bad image"}, "image"),
        ({"price": 500.0}, "bid price"),
        ({"label": "x" * 300}, "label"),
    ],
)
async def test_create_arguments_are_checked_before_sending(
    server: ScriptedVast, vast: VastClient, kwargs: dict[str, object], fragment: str
) -> None:
    base: dict[str, object] = {"image": IMAGE, "disk_gb": 10, "runtype": "ssh_direc ssh_proxy"}
    base.update(kwargs)
    with pytest.raises(UsageError, match=fragment):
        await vast.create_instance(1, **base)  # type: ignore[arg-type]
    assert server.requests == []


async def test_list_follows_v1_pages(
    server: ScriptedVast, vast: VastClient, vast_fixtures: Path
) -> None:
    running = load(vast_fixtures, "instance-running.json")
    loading = load(vast_fixtures, "instance-loading.json")
    page1 = {**running, "next_token": "tok-1"}
    page2 = {**loading, "instances": loading["instances"][1:], "next_token": "tok-2"}
    page3 = {
        "success": True,
        "instances": [{**running["instances"][0], "id": 5}],
        "next_token": None,
    }
    server.on(
        "GET",
        "/api/v1/instances/",
        json_response(200, page1),
        json_response(200, page2),
        json_response(200, page3),
    )
    instances = await vast.list_instances()
    assert [i.id for i in instances] == [31000001, 31000002, 5]  # the repeat is dropped
    params = [dict(r.url.params) for r in server.requests]
    assert params == [
        {"limit": "25"},
        {"limit": "25", "after_token": "tok-1"},
        {"limit": "25", "after_token": "tok-2"},
    ]


async def test_list_falls_back_to_v0_when_v1_is_missing(
    server: ScriptedVast, vast: VastClient, vast_fixtures: Path
) -> None:
    v0 = {"instances": load(vast_fixtures, "instance-running.json")["instances"]}
    server.on("GET", "/api/v1/instances/", text_response(404, "404: Not Found"))
    server.on("GET", "/api/v0/instances/", json_response(200, v0))
    assert [i.id for i in await vast.list_instances()] == [31000001, 31000002]
    assert [i.id for i in await vast.list_instances()] == [31000001, 31000002]
    assert len(server.calls("GET", "/api/v1/instances/")) == 1  # remembered
    assert [dict(r.url.params) for r in server.calls("GET", "/api/v0/instances/")] == [
        {"owner": "me"},
        {"owner": "me"},
    ]


async def test_list_with_a_token_that_repeats_is_a_protocol_error(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on("GET", "/api/v1/instances/", json_response(200, {"instances": [], "next_token": "t"}))
    with pytest.raises(Exception, match="repeats"):
        await vast.list_instances()


async def test_show(server: ScriptedVast, vast: VastClient, vast_fixtures: Path) -> None:
    raw = load(vast_fixtures, "instance-running.json")["instances"][1]
    server.on("GET", "/api/v0/instances/31000002/", json_response(200, {"instances": raw}))
    server.on("GET", "/api/v0/instances/7/", json_response(200, {"instances": None}))
    server.on("GET", "/api/v0/instances/8/", json_response(404, {"error": "no_such_instance"}))
    shown = await vast.show_instance(31000002)
    assert shown is not None and shown.host_port(8188) == 40188
    assert await vast.show_instance(7) is None
    assert await vast.show_instance(8) is None
    assert dict(server.requests[0].url.params) == {"owner": "me"}


async def test_destroy_is_idempotent(server: ScriptedVast, vast: VastClient) -> None:
    server.on("DELETE", "/api/v0/instances/1/", json_response(200, {"success": True}))
    server.on("DELETE", "/api/v0/instances/2/", json_response(404, {"error": "not_found"}))
    server.on("DELETE", "/api/v0/instances/3/", text_response(404, "Not Found"))
    server.on(
        "DELETE",
        "/api/v0/instances/4/",
        json_response(200, {"success": False, "error": "no_such_instance", "msg": "gone"}),
    )
    server.on("DELETE", "/api/v0/instances/5/", json_response(400, {"error": "invalid_args"}))
    assert await vast.destroy(1) is True
    assert await vast.destroy(2) is False
    assert await vast.destroy(3) is False
    assert await vast.destroy(4) is False
    with pytest.raises(VastRequestRejected, match="invalid_args"):
        await vast.destroy(5)
    assert server.body(server.requests[0]) == {}


async def test_manage_calls(server: ScriptedVast, vast: VastClient) -> None:
    server.on("PUT", r"/api/v0/instances/(reboot/)?9/", json_response(200, {"success": True}))
    await vast.start(9)
    await vast.stop(9)
    await vast.set_label(9, "comfyfleet:pool-a:5678 my name")
    await vast.reboot(9)
    sent = [(r.url.path, server.body(r)) for r in server.requests]
    assert sent == [
        ("/api/v0/instances/9/", {"state": "running"}),
        ("/api/v0/instances/9/", {"state": "stopped"}),
        ("/api/v0/instances/9/", {"label": "comfyfleet:pool-a:5678 my name"}),
        ("/api/v0/instances/reboot/9/", {}),
    ]


async def test_manage_a_missing_instance(server: ScriptedVast, vast: VastClient) -> None:
    server.on(
        "PUT",
        "/api/v0/instances/9/",
        json_response(404, {"error": "no_such_instance", "msg": "Instance 9 not found."}),
    )
    with pytest.raises(VastNotFound, match="stop instance 9"):
        await vast.stop(9)


async def test_logs_poll_the_result_url_without_the_key(
    server: ScriptedVast, vast: VastClient, clock: RecordingClock
) -> None:
    result = "https://s3.example/logs/abc.log?X-Amz-Signature=deadbeefcafe1234"
    server.on(
        "PUT",
        "/api/v0/instances/request_logs/9/",
        json_response(200, {"success": True, "result_url": result, "msg": "ok"}),
    )
    server.on(
        "GET",
        "/logs/abc.log",
        text_response(404, "NoSuchKey"),
        text_response(403, "x"),
        text_response(200, "line 1\nline 2\n"),
    )
    assert await vast.logs(9, tail=200) == "line 1\nline 2\n"
    assert server.body(server.requests[0]) == {"tail": "200"}
    polls = server.calls("GET", "/logs/abc.log")
    assert len(polls) == 3 and all("Authorization" not in r.headers for r in polls)
    assert clock.sleeps == [0.3, 0.3]


async def test_logs_give_up(server: ScriptedVast, vast: VastClient, clock: RecordingClock) -> None:
    result = "https://s3.example/logs/abc.log?X-Amz-Signature=deadbeefcafe1234"
    server.on(
        "PUT",
        "/api/v0/instances/request_logs/9/",
        json_response(200, {"success": True, "result_url": result}),
    )
    server.on("GET", "/logs/abc.log", text_response(404, "NoSuchKey"))
    with pytest.raises(VastLogsUnavailable) as info:
        await vast.logs(9)
    assert len(server.calls("GET", "/logs/abc.log")) == 30 and len(clock.sleeps) == 29
    assert "deadbeefcafe1234" not in str(info.value) and "s3.example/logs/abc.log" in str(
        info.value
    )


async def test_logs_survive_transport_errors_while_polling(
    server: ScriptedVast, vast: VastClient
) -> None:
    server.on(
        "PUT",
        "/api/v0/instances/request_logs/9/",
        json_response(200, {"success": True, "result_url": "http://127.0.0.1:9/r.log"}),
    )
    server.on("GET", "/r.log", httpx.ConnectError("refused"), text_response(200, "ok"))
    assert await vast.logs(9) == "ok"


async def test_ssh_keys(server: ScriptedVast, vast: VastClient) -> None:
    server.on(
        "GET",
        "/api/v0/ssh/",
        json_response(
            200,
            [
                {
                    "id": 1,
                    "user_id": 4,
                    "key": PUBKEY,
                    "created_at": "2026-01-01",
                    "deleted_at": None,
                }
            ],
        ),
    )
    server.on(
        "POST",
        "/api/v0/ssh/",
        json_response(
            200,
            {
                "success": True,
                "key": {
                    "id": 2,
                    "user_id": 4,
                    "public_key": PUBKEY,
                    "created_at": 1.0,
                    "deleted_at": None,
                },
            },
        ),
    )
    server.on("POST", "/api/v0/instances/9/ssh/", json_response(200, {"success": True}))
    assert [(k.id, k.public_key) for k in await vast.ssh_keys()] == [(1, PUBKEY)]
    added = await vast.add_ssh_key(PUBKEY + "\n")
    assert (added.id, added.public_key) == (2, PUBKEY)
    await vast.attach_ssh_key(9, PUBKEY)
    assert [server.body(r) for r in server.requests[1:]] == [{"ssh_key": PUBKEY}] * 2


@pytest.mark.parametrize(
    "bad",
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----",
        "not a key",
        "ssh-ed25519 !!!notbase64",
        PUBKEY + "\nssh-rsa AAAA two keys",
    ],
)
async def test_only_one_public_key_line_is_sent(
    server: ScriptedVast, vast: VastClient, bad: str
) -> None:
    with pytest.raises(UsageError):
        await vast.add_ssh_key(bad)
    with pytest.raises(UsageError):
        await vast.attach_ssh_key(9, bad)
    assert server.requests == []


async def test_current_user(server: ScriptedVast, vast: VastClient) -> None:
    server.on(
        "GET",
        "/api/v0/users/current/",
        json_response(
            200,
            {
                "id": 42,
                "email": "me@example.com",
                "credit": 25.0,
                "balance": 0.0,
                "api_key": API_KEY,
                "ssh_key": PUBKEY,
                "has_billing": True,
            },
        ),
    )
    user = await vast.current_user()
    assert (user.id, user.email, user.credit, user.has_billing) == (
        42,
        "me@example.com",
        25.0,
        True,
    )
    assert API_KEY not in repr(user) + user.model_dump_json()


async def test_unreachable_base_url_over_real_sockets(clock: RecordingClock) -> None:
    # a loopback port nothing listens on: a real connection refusal, retried then mapped
    async with VastClient(API_KEY, base_url="http://127.0.0.1:9", clock=clock) as vast:
        with pytest.raises(VastUnreachable):
            await vast.current_user()
    assert len(clock.sleeps) == 2
