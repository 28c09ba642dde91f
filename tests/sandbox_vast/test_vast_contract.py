"""The simulator against the captured fixtures and the reference: shapes, codes, auth, paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyfleet.sandbox.vast.market import packaged_offers

from .conftest import Api


def _load(vast_dir: Path, name: str) -> Any:
    return json.loads((vast_dir / name).read_text())


@pytest.fixture(scope="module")
def vast_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "vast"


def _assert_same_types(row: dict[str, Any], fixture: dict[str, Any], what: str) -> None:
    assert set(row) == set(fixture), f"{what}: key sets differ: {set(row) ^ set(fixture)}"
    for key, expected in fixture.items():
        got = row[key]
        if expected is None or got is None:
            continue
        assert type(got) is type(expected), f"{what}.{key}: {type(got)} vs {type(expected)}"


def test_packaged_offers_are_the_shared_fixture(vast_dir: Path) -> None:
    assert packaged_offers() == _load(vast_dir, "offers.json")["offers"]


async def test_offers_have_the_fixture_fields_and_types(api: Api, vast_dir: Path) -> None:
    fixture = _load(vast_dir, "offers.json")["offers"]
    offers = await api.search(allocated_storage=5.0)
    assert len(offers) > 60
    for offer in offers:
        _assert_same_types(offer, fixture[0], f"offer {offer['id']}")


async def test_fixture_offers_are_served_with_their_prices(api: Api, vast_dir: Path) -> None:
    fixture = {o["id"]: o for o in _load(vast_dir, "offers.json")["offers"]}
    served = {o["id"]: o for o in await api.search(allocated_storage=5.0)}
    for offer_id, expected in fixture.items():
        got = served[offer_id]
        changing = {"end_date", "duration", "rn"}  # the listing window moves with the clock
        assert {k: v for k, v in got.items() if k not in changing} == {
            k: v for k, v in expected.items() if k not in changing
        }
        assert got["duration"] > 0


async def test_instance_rows_match_the_fixtures(api: Api, vast_dir: Path) -> None:
    loading = _load(vast_dir, "instance-loading.json")
    running = _load(vast_dir, "instance-running.json")
    new_id = await api.rent(
        env={"-p 8188:8188": "1", "-p 1111:1111": "1", "WEB_PASSWORD": "pw"},
        runtype="jupyter_direc ssh_direc ssh_proxy",
        label="contract",
        onstart="entrypoint.sh",
    )
    r = await api.get("/api/v1/instances/")
    envelope = r.json()
    assert set(envelope) == set(loading)
    created = envelope["instances"][0]
    _assert_same_types(created, loading["instances"][0], "created")
    assert created["actual_status"] is None and created["ports"] is None
    assert created["intended_status"] == "running"
    assert created["extra_env"] == [
        ["-p 8188:8188", "1"],
        ["-p 1111:1111", "1"],
        ["WEB_PASSWORD", "pw"],
    ]

    await api.advance(10)
    row = await api.show(new_id)
    assert row["actual_status"] == "loading" and row["ports"] is None
    assert row["status_msg"].startswith("Pulling image vastai/comfy")

    await api.advance(120)
    row = await api.show(new_id)
    _assert_same_types(row, running["instances"][1], "running")
    assert row["actual_status"] == "running"
    assert row["image_runtype"] == "jupyter_direc ssh_direc ssh_proxy"
    assert set(row["ports"]) == {"22/tcp", "1111/tcp", "8080/tcp", "8188/tcp"}
    for mapping in row["ports"].values():
        assert [m["HostIp"] for m in mapping] == ["0.0.0.0", "::"]
        assert all(isinstance(m["HostPort"], str) and m["HostPort"].isdigit() for m in mapping)
    assert row["public_ipaddr"].strip() == "127.0.0.1"
    assert row["status_msg"] == "success, running vastai/comfy_v0.8.2-cuda-12.9-py312/jupyter"

    await api.manage(new_id, state="stopped")
    row = await api.show(new_id)
    stopped = running["instances"][0]
    _assert_same_types(row, stopped, "stopped")
    for key in ("actual_status", "intended_status", "cur_state", "next_state", "ports"):
        assert row[key] == stopped[key], key


async def test_legacy_list_and_show_envelopes(api: Api) -> None:
    new_id = await api.rent()
    r = await api.get("/api/v0/instances/", params={"owner": "me"})
    assert list(r.json()) == ["instances"] and r.json()["instances"][0]["id"] == new_id
    r = await api.get(f"/api/v0/instances/{new_id}/", params={"owner": "me"})
    assert list(r.json()) == ["instances"] and r.json()["instances"]["id"] == new_id
    r = await api.get("/api/v0/instances/999/")
    assert r.status_code == 200 and r.json() == {"instances": None}


async def test_content_type_is_exactly_json(api: Api) -> None:
    for r in (
        await api.post("/api/v0/bundles/", json={}),
        await api.get("/api/v0/users/current"),
        await api.get("/api/v0/instances/1/"),
        await api.put("/api/v0/asks/1/", json={"image": "x"}),
    ):
        assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v0/bundles/", {}),
        ("POST", "/api/v0/bundles", {}),
        ("GET", "/api/v0/users/current/", None),
        ("GET", "/api/v0/users/current", None),
        ("GET", "/api/v1/instances/", None),
        ("GET", "/api/v1/instances", None),
        ("GET", "/api/v0/ssh/", None),
        ("GET", "/api/v0/ssh", None),
    ],
)
async def test_paths_work_with_and_without_trailing_slash(
    api: Api, method: str, path: str, body: Any
) -> None:
    r = await api.http.request(method, path, json=body)
    assert r.status_code == 200, r.text


async def test_both_auth_styles_and_the_invalid_key_answer(api: Api) -> None:
    key = api.cloud.api_key
    async with httpx.AsyncClient(base_url=api.cloud.url) as bare:
        r = await bare.get("/api/v0/users/current/", params={"api_key": key})
        assert r.status_code == 200 and r.json()["api_key"] == key
        r = await bare.get("/api/v0/users/current/", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
        for headers, params in (
            ({}, {}),
            ({"Authorization": "Bearer wrong"}, {}),
            ({}, {"api_key": "wrong"}),
        ):
            r = await bare.post("/api/v0/bundles/", json={}, headers=headers, params=params)
            assert r.status_code == 401
            assert r.json() == {"success": False, "error": "auth_error", "msg": "Invalid user key"}


async def test_error_shapes_per_the_reference(api: Api) -> None:
    offer = await api.offer(gpu_name="RTX 4090")
    await api.create(offer["id"])
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x"})
    assert r.status_code == 404
    body = r.json()
    assert body["success"] is False and body["error"] == "no_such_ask"
    assert f"Instance type by id {offer['id']} is not available" in body["msg"]

    r = await api.delete("/api/v0/instances/424242/", json={})
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await api.manage(424242, state="stopped")
    assert (r.status_code, r.json()["error"]) == (404, "no_such_instance")
    assert r.json()["msg"] == "Instance 424242 not found."
    r = await api.put("/api/v0/instances/request_logs/424242/", json={"tail": "10"})
    assert (r.status_code, r.json()["error"]) == (404, "invalid_id")
    r = await api.post("/api/v0/bundles/", content=b"{not json")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    assert r.json()["msg"] == "Invalid json body"
    r = await api.post("/api/v0/ssh/", json={"ssh_key": ""})
    assert (r.status_code, r.json()["error"]) == (400, "no_ssh_key")


async def test_create_validation_and_label_limits(api: Api) -> None:
    offer = await api.offer(gpu_name="RTX 3090")
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"disk": 20})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_args")
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "runtype": "telnet"})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_args")
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "env": {"A": "x" * 300}})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_args")
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x", "price": 500})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_price")
    new_id = await api.create(offer["id"], runtype="ssh_direct")
    assert (await api.show(new_id))["image_runtype"] == "ssh_direc"
    r = await api.manage(new_id, label="x" * 1025)
    assert (r.status_code, r.json()["error"]) == (400, "label_too_long")
    r = await api.manage(new_id, label="fine")
    assert r.json() == {"success": True, "msg": f"label for {new_id} set to fine."}


async def test_create_with_the_comfyui_template_merges_env(api: Api) -> None:
    r = await api.get(
        "/api/v0/template/", params={"select_filters": json.dumps({"name": {"eq": "ComfyUI"}})}
    )
    template = r.json()["templates"][0]
    offer = await api.offer(gpu_name="RTX 4090")
    r = await api.put(
        f"/api/v0/asks/{offer['id']}/",
        json={
            "template_hash_id": template["hash_id"],
            "disk": 40,
            "env": {"WEB_PASSWORD": "secret", "OPEN_BUTTON_PORT": "9999"},
        },
    )
    row = await api.show(r.json()["new_contract"])
    env = dict(row["extra_env"])
    assert row["image_uuid"] == "vastai/comfy:v0.8.2-cuda-12.9-py312"
    assert row["template_hash_id"] == template["hash_id"] and row["onstart"] == "entrypoint.sh"
    assert env["OPEN_BUTTON_PORT"] == "9999" and env["WEB_PASSWORD"] == "secret"
    assert env["-p 8188:8188"] == "1" and "18188" in env["COMFYUI_ARGS"]
    assert row["image_runtype"] == "jupyter_direc ssh_direc ssh_proxy"
