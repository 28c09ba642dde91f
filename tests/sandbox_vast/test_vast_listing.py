"""Listing (v1 pages, filters, order), logs through result_url, SSH keys, the user."""

from __future__ import annotations

import json
from typing import Any

import httpx

from .conftest import Api


async def _page(api: Api, **params: Any) -> dict[str, Any]:
    # Encoded as the official client does: JSON values, strings raw.
    query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    r = await api.get("/api/v1/instances/", params=query)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


async def _fleet(api: Api, count: int) -> list[int]:
    offers = await api.search(num_gpus={"eq": 1}, order=[["id", "asc"]], limit=count)
    assert len(offers) == count
    ids = []
    for n, offer in enumerate(offers):
        ids.append(await api.create(offer["id"], label=f"w{n % 3}" if n % 4 else None))
    return ids


async def test_pages_of_at_most_25_follow_next_token(api: Api) -> None:
    ids = await _fleet(api, 28)
    first = await _page(api, limit=100)
    assert first["instances_found"] == 25 and first["total_instances"] == 28
    assert first["next_token"]
    second = await _page(api, limit=100, after_token=first["next_token"])
    assert second["instances_found"] == 3 and second["next_token"] is None
    seen = [r["id"] for r in first["instances"] + second["instances"]]
    assert seen == sorted(ids)
    assert (await _page(api, limit=0))["instances_found"] == 5
    assert (await _page(api, limit=2))["instances_found"] == 2
    r = await api.get("/api/v1/instances/", params={"after_token": "bm9wZQ=="})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_token")


async def test_filters_order_label_counts_and_columns(api: Api) -> None:
    ids = await _fleet(api, 8)
    await api.advance(65)
    await api.manage(ids[1], state="stopped")
    page = await _page(api, select_filters={"actual_status": {"in": ["exited"]}})
    assert [r["id"] for r in page["instances"]] == [ids[1]]
    unlabelled = await _page(api, select_filters={"label": {"in": [None]}})
    assert {r["id"] for r in unlabelled["instances"]} == {ids[0], ids[4]}
    everything = await _page(api)
    assert everything["label_counts"] == {"": 2, "w1": 2, "w2": 2, "w0": 2}
    ordered = await _page(api, order_by=[{"col": "label", "dir": "desc"}])
    labels = [r["label"] for r in ordered["instances"]]
    assert labels == ["w2", "w2", "w1", "w1", "w0", "w0", None, None]
    slim = await _page(api, select_cols=["id", "actual_status", "nonsense"])
    assert slim["instances"][0] == {"id": ids[0], "actual_status": "running", "nonsense": None}
    paged = await _page(api, order_by=[{"col": "label", "dir": "desc"}], limit=3)
    rest = await _page(
        api, order_by=[{"col": "label", "dir": "desc"}], limit=25, after_token=paged["next_token"]
    )
    assert [r["id"] for r in paged["instances"] + rest["instances"]] == [
        r["id"] for r in ordered["instances"]
    ]
    r = await api.get(
        "/api/v1/instances/", params={"select_filters": json.dumps({"dph_total": {"lt": 1}})}
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = await api.get("/api/v0/instances/filters/")
    assert {"actual_status": "exited", "verification": "verified"}.items() <= next(
        f for f in r.json()["filters"] if f["actual_status"] == "exited"
    ).items()


async def test_logs_come_through_a_result_url_that_is_not_ready_at_once(api: Api) -> None:
    api.knobs.set_logs_not_ready_polls(3)
    new_id = await api.rent()
    await api.advance(65)
    r = await api.put(f"/api/v0/instances/request_logs/{new_id}/", json={"tail": "1000"})
    body = r.json()
    assert body["success"] is True and body["result_url"].startswith(api.cloud.url)
    async with httpx.AsyncClient() as anonymous:  # the URL needs no key, like S3's
        codes = [(await anonymous.get(body["result_url"])).status_code for _ in range(3)]
        assert codes == [404, 404, 404]
        ready = await anonymous.get(body["result_url"])
    assert ready.status_code == 200 and "container started" in ready.text
    r = await api.put(
        f"/api/v0/instances/request_logs/{new_id}/",
        json={"tail": "1", "daemon_logs": "true", "filter": "pulling"},
    )
    api.knobs.set_logs_not_ready_polls(0)
    async with httpx.AsyncClient() as anonymous:
        for _ in range(4):
            text = await anonymous.get(r.json()["result_url"])
            if text.status_code == 200:
                break
    assert text.text.count("\n") == 1 and "pulling image" in text.text


async def test_ssh_keys_and_attaching_one_to_an_instance(api: Api) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0ZXN0a2V5 me@laptop"
    r = await api.post("/api/v0/ssh/", json={"ssh_key": key})
    created = r.json()
    assert created["success"] is True and created["key"]["public_key"] == key
    r = await api.get("/api/v0/ssh/")
    assert [k["key"] for k in r.json()] == [key]
    assert (await api.get("/api/v0/users/current/")).json()["ssh_key"] == key
    r = await api.post("/api/v0/ssh/", json={"ssh_key": "not a key"})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_args")
    new_id = await api.rent()
    other = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ other@desk"
    r = await api.post(f"/api/v0/instances/{new_id}/ssh/", json={"ssh_key": other})
    assert r.json()["success"] is True
    attached_id = r.json()["key"]["id"]
    r = await api.delete(f"/api/v0/instances/{new_id}/ssh/{attached_id}/")
    assert r.json() == {"success": True}
    r = await api.post("/api/v0/instances/999/ssh/", json={"ssh_key": other})
    assert r.status_code == 404
    r = await api.delete(f"/api/v0/ssh/{created['key']['id']}/")
    assert r.json() == {"success": True}
    assert (await api.get("/api/v0/ssh/")).json() == []
    r = await api.delete(f"/api/v0/ssh/{created['key']['id']}/")
    assert r.status_code == 404


async def test_current_user_carries_the_api_key_and_credit(api: Api) -> None:
    user = (await api.get("/api/v0/users/current")).json()
    assert user["api_key"] == api.cloud.api_key
    assert user["credit"] == 50.0 and user["email"].endswith(".invalid")
