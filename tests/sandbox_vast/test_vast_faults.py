"""Every fault knob, through the Python API and the HTTP control API."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from .conftest import Api


async def test_rate_limit_answers_plain_text_429_per_endpoint(api: Api) -> None:
    api.knobs.rate_limit("show_instance", 2.0)
    assert (await api.get("/api/v0/instances/1/")).status_code == 200
    r = await api.get("/api/v0/instances/1/")
    assert r.status_code == 429
    assert r.headers["content-type"] == "text/plain"
    assert r.text == "API requests too frequent endpoint threshold=2"
    assert "retry-after" not in r.headers
    assert (await api.get("/api/v0/users/current/")).status_code == 200  # other endpoints pass
    api.clock.advance(2.0)
    assert (await api.get("/api/v0/instances/1/")).status_code == 200


async def test_reference_rate_limits_can_be_switched_on(api: Api) -> None:
    r = await api.post("/__sandbox/knobs", json={"rate_limits": "vast"})
    assert r.json()["knobs"]["rate_limits"]["create_instance"] == 4.5
    offers = await api.search(gpu_name={"eq": "RTX 3090"}, limit=2)
    await api.create(offers[0]["id"])
    r = await api.put(f"/api/v0/asks/{offers[1]['id']}/", json={"image": "x"})
    assert r.status_code == 429


async def test_daily_search_quota(api: Api) -> None:
    api.knobs.set_search_quota(1)
    assert (await api.post("/api/v0/bundles/", json={})).status_code == 200
    r = await api.post("/api/v0/bundles/", json={})
    assert r.status_code == 429 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "search_quota_exceeded" and r.json()["success"] is False
    reset = int(r.headers["X-RateLimit-Reset"])
    midnight = dt.datetime.fromtimestamp(reset, dt.UTC)
    assert (midnight.hour, midnight.minute, midnight.second) == (0, 0, 0)
    assert 0 < reset - api.clock.now() <= 86400
    assert (await api.put("/api/v0/search/asks/", json={"q": {}})).status_code == 429
    api.knobs.set_search_quota(None)
    assert (await api.post("/api/v0/bundles/", json={})).status_code == 200


async def test_5xx_storm_hits_the_next_requests_then_clears(api: Api) -> None:
    api.knobs.fail_next(2, 502)
    api.knobs.fail_next(1, 503)
    codes = [(await api.get("/api/v0/users/current/")).status_code for _ in range(4)]
    assert codes == [502, 502, 503, 200]
    api.knobs.fail_next(1, 502)
    r = await api.post("/api/v0/bundles/", json={})
    assert r.status_code == 502 and r.headers["content-type"] == "text/html"


async def test_a_failed_create_can_leave_a_contract(api: Api) -> None:
    offer = await api.offer(gpu_name="RTX 4090")
    api.knobs.fail_creates(1, 500)
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "label": "orphan"})
    assert r.status_code == 500 and r.json()["success"] is False
    listed = (await api.get("/api/v1/instances/")).json()["instances"]
    assert [i["label"] for i in listed] == ["orphan"]
    before = await api.credit()
    await api.advance(3600)
    assert await api.credit() < before  # it bills like any other instance

    offer = await api.offer(gpu_name="RTX 4090")
    api.knobs.fail_creates(1, 400)
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "label": "second"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_args"
    assert (await api.get("/api/v1/instances/")).json()["total_instances"] == 2


async def test_stuck_in_loading_until_released(api: Api) -> None:
    api.knobs.stick_next(1)
    stuck = await api.rent()
    fine = await api.rent("RTX 3090")
    await api.advance(6 * 3600)
    assert (await api.show(stuck))["actual_status"] == "loading"
    assert (await api.show(fine))["actual_status"] == "running"
    r = await api.post(f"/__sandbox/instances/{stuck}/unstick")
    assert r.json() == {"success": True}
    await api.advance(60)
    assert (await api.show(stuck))["actual_status"] == "running"
    api.knobs.instance_action("stick", fine)
    await api.put(f"/api/v0/instances/reboot/{fine}/", json={})
    await api.advance(10)
    assert (await api.show(fine))["actual_status"] == "running"  # stuck only affects loading


async def test_host_offline_and_back(api: Api) -> None:
    new_id = await api.rent()
    await api.advance(65)
    storage = (await api.show(new_id))["storage_total_cost"]
    api.knobs.instance_action("offline", new_id)
    before = await api.credit()
    await api.advance(3600)
    row = await api.show(new_id)
    assert row["actual_status"] == "offline" and row["ports"] is None
    assert row["intended_status"] == "running"
    assert before - await api.credit() == pytest.approx(storage, abs=1e-5)  # storage only
    api.knobs.instance_action("online", new_id)
    await api.advance(0)
    assert (await api.show(new_id))["actual_status"] == "loading"
    await api.advance(10)
    assert (await api.show(new_id))["actual_status"] == "running"


async def test_crash_and_endpoint_change(api: Api) -> None:
    new_id = await api.rent(runtype="ssh_direc ssh_proxy", env={"-p 8188:8188": "1"})
    await api.advance(65)
    ports = (await api.show(new_id))["ports"]
    api.knobs.instance_action("change_endpoint", new_id)
    await api.advance(0)
    moved = await api.show(new_id)
    assert moved["actual_status"] == "running" and moved["ports"] != ports
    assert set(moved["ports"]) == set(ports)
    api.knobs.instance_action("crash", new_id)
    await api.advance(0)
    row = await api.show(new_id)
    assert (row["actual_status"], row["intended_status"]) == ("exited", "running")
    await api.manage(new_id, state="running")
    await api.advance(10)
    assert (await api.show(new_id))["actual_status"] == "running"


async def test_control_api(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.cloud.url) as anonymous:
        info = (await anonymous.get("/__sandbox/info")).json()
        assert set(info) >= {"speed", "api_url", "started_at", "version"}
        assert info["api_url"] == api.cloud.url and info["speed"] == 1.0
        assert (await anonymous.get("/__sandbox/knobs")).status_code == 401
    r = await api.post(
        "/__sandbox/knobs",
        json={
            "durations": {"loading": 5},
            "search_quota": 3,
            "renter_probability": 0.5,
            "credit": 12.5,
        },
    )
    knobs = r.json()["knobs"]
    assert knobs["durations"]["loading"] == 5.0 and knobs["search_quota"] == 3
    assert knobs["renter_probability"] == 0.5
    assert await api.credit() == 12.5
    r = await api.post("/__sandbox/knobs", json={"warp_speed": 9})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_knob")
    r = await api.post("/__sandbox/knobs", json={"durations": {"loading": -1}})
    assert r.status_code == 400
    new_id = await api.rent()
    r = await api.post(f"/__sandbox/instances/{new_id}/teleport")
    assert r.status_code == 400
    r = await api.post("/__sandbox/instances/1/offline")
    assert r.status_code == 404
    state = (await api.get("/__sandbox/state")).json()
    assert state["instances"][0]["id"] == new_id and state["credit"] == 12.5
    await api.post("/__sandbox/knobs", json={"reset": True})
    assert (await api.get("/__sandbox/knobs")).json()["search_quota"] is None
