"""Instance lifecycle and per-second billing on a hand-moved clock (exact numbers)."""

from __future__ import annotations

import pytest

from .conftest import Api

# QUICK durations (conftest): scheduling 5 s, loading 60 s, cached loading 10 s, reboot 10 s.


async def _rates(api: Api, instance_id: int) -> tuple[float, float]:
    row = await api.show(instance_id)
    return row["dph_total"], row["storage_total_cost"]


async def test_phases_follow_the_configured_durations(api: Api) -> None:
    new_id = await api.rent(env={"-p 8188:8188": "1"}, runtype="ssh_direc ssh_proxy")
    row = await api.show(new_id)
    assert (row["actual_status"], row["intended_status"], row["cur_state"]) == (
        None,
        "running",
        "running",
    )
    await api.advance(4.9)
    assert (await api.show(new_id))["actual_status"] is None
    await api.advance(0.2)
    row = await api.show(new_id)
    assert row["actual_status"] == "loading" and row["ports"] is None
    first = row["status_msg"]
    await api.advance(30)
    second = (await api.show(new_id))["status_msg"]
    assert first.startswith("Pulling image") and second != first  # progress moves
    await api.advance(30)
    row = await api.show(new_id)
    assert row["actual_status"] == "running"
    assert set(row["ports"]) == {"22/tcp", "8188/tcp"}
    assert row["ssh_port"] == int(row["ports"]["22/tcp"][0]["HostPort"])  # no jupyter offset
    assert row["uptime_mins"] == 0.0
    await api.advance(120)
    assert (await api.show(new_id))["uptime_mins"] == 2.0


async def test_jupyter_instances_list_the_ssh_port_minus_one(api: Api) -> None:
    new_id = await api.rent(runtype="jupyter_direc ssh_direc ssh_proxy")
    await api.advance(70)
    row = await api.show(new_id)
    assert row["ssh_port"] + 1 == int(row["ports"]["22/tcp"][0]["HostPort"])


async def test_billing_running_then_stopped(api: Api) -> None:
    start = await api.credit()
    new_id = await api.rent()
    dph_total, storage = await _rates(api, new_id)
    assert dph_total > storage > 0
    await api.advance(65)  # 5 s creating + 60 s loading: storage only
    assert (await api.show(new_id))["actual_status"] == "running"
    assert await api.credit() == pytest.approx(start - storage * 65 / 3600, abs=1e-6)
    before = await api.credit()
    await api.advance(3600)
    assert await api.credit() == pytest.approx(before - dph_total, abs=1e-6)
    await api.manage(new_id, state="stopped")
    before = await api.credit()
    await api.advance(7200)
    assert await api.credit() == pytest.approx(before - 2 * storage, abs=1e-6)
    r = await api.get("/api/v0/users/current/")
    assert r.json()["balance"] == r.json()["credit"]


async def test_one_big_jump_bills_like_small_steps(api: Api) -> None:
    start = await api.credit()
    new_id = await api.rent()
    dph_total, storage = await _rates(api, new_id)
    await api.advance(3665)
    expected = start - storage * 65 / 3600 - dph_total
    assert await api.credit() == pytest.approx(expected, abs=1e-6)


async def test_destroy_ends_billing(api: Api) -> None:
    new_id = await api.rent()
    await api.advance(100)
    r = await api.delete(f"/api/v0/instances/{new_id}/", json={})
    assert r.json() == {"success": True}
    before = await api.credit()
    await api.advance(86400)
    assert await api.credit() == before
    assert await api.show(new_id) is None
    r = await api.get("/api/v0/users/me/invoices")
    assert r.json()["invoices"][0]["instance_id"] == new_id


async def test_out_of_credit_stops_instances_and_storage_goes_negative(api: Api) -> None:
    api.knobs.set_credit(1.0)
    new_id = await api.rent("H100 SXM")
    dph_total, storage = await _rates(api, new_id)
    await api.advance(65 + 4 * 3600)  # enough to spend $1 at the H100's rate
    row = await api.show(new_id)
    assert row["actual_status"] == "exited" and row["intended_status"] == "stopped"
    assert "credit" in row["status_msg"]
    # Credit hit zero at t_zero; since then the stopped instance paid storage only.
    t_zero = 65 + (1.0 - storage * 65 / 3600) / dph_total * 3600
    assert 65 < t_zero < 65 + 4 * 3600
    spent_since = storage * (65 + 4 * 3600 - t_zero) / 3600
    assert await api.credit() == pytest.approx(-spent_since, abs=1e-5)  # rows round to 1e-6
    await api.advance(3600)
    assert await api.credit() == pytest.approx(-spent_since - storage, abs=1e-5)
    offer = await api.offer(gpu_name="RTX 3090")
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x"})
    assert (r.status_code, r.json()["error"]) == (400, "missing_billing")
    r = await api.manage(new_id, state="running")
    assert (r.status_code, r.json()["error"]) == (400, "missing_billing")


async def test_stop_releases_the_gpu_and_start_reloads_from_cache(api: Api) -> None:
    offer = (await api.search(id={"eq": 20000000}))[0]
    new_id = await api.create(offer["id"])
    await api.advance(65)
    await api.manage(new_id, state="stopped")
    assert (await api.show(new_id))["actual_status"] == "exited"
    again = (await api.search(machine_id={"eq": offer["machine_id"]}))[0]
    assert again["gpu_ids"] == offer["gpu_ids"]  # its GPU is back on the market (new offer id)
    assert again["id"] != offer["id"]
    r = await api.manage(new_id, state="running")
    assert r.json() == {"success": True}
    row = await api.show(new_id)
    assert row["actual_status"] == "loading" and "cached" in row["status_msg"]
    await api.advance(10)
    assert (await api.show(new_id))["actual_status"] == "running"


async def test_start_waits_while_another_renter_holds_the_gpu(api: Api) -> None:
    api.knobs.set_durations(renter_hold=None)  # the renter keeps it until released
    new_id = await api.rent()
    await api.advance(65)
    await api.manage(new_id, state="stopped")
    api.knobs.instance_action("take_gpus", new_id)
    await api.manage(new_id, state="running")
    await api.advance(3 * 3600)
    row = await api.show(new_id)
    assert (row["actual_status"], row["intended_status"]) == ("exited", "running")
    assert (row["cur_state"], row["next_state"]) == ("stopped", "running")
    assert "Scheduling" in row["status_msg"]
    api.knobs.instance_action("release_gpus", new_id)
    await api.advance(0)
    assert (await api.show(new_id))["actual_status"] == "loading"
    await api.advance(10)
    assert (await api.show(new_id))["actual_status"] == "running"


async def test_a_renter_takes_gpus_at_stop_and_hands_them_back_later(api: Api) -> None:
    api.knobs.set_renter_probability(1.0)
    api.knobs.set_durations(renter_hold=600.0)
    new_id = await api.rent()
    await api.advance(65)
    await api.manage(new_id, state="stopped")
    await api.manage(new_id, state="running")
    await api.advance(599)
    assert (await api.show(new_id))["actual_status"] == "exited"
    await api.advance(1)
    assert (await api.show(new_id))["actual_status"] == "loading"


async def test_a_waiting_start_can_give_up(api: Api) -> None:
    api.knobs.set_durations(scheduling_timeout=300.0, renter_hold=None)
    new_id = await api.rent()
    await api.advance(65)
    api.knobs.instance_action("take_gpus", new_id)  # armed: the renter takes them at the stop
    await api.manage(new_id, state="stopped")
    await api.manage(new_id, state="running")
    await api.advance(301)
    row = await api.show(new_id)
    assert (row["actual_status"], row["intended_status"]) == ("exited", "stopped")
    assert row["status_msg"].startswith("Error")


async def test_create_on_a_machine_that_cannot_start_now(api: Api) -> None:
    offer = await api.offer(gpu_name="RTX 4090")
    api.knobs.make_unavailable(1)
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x"})
    assert (r.status_code, r.json()["error"]) == (410, "no_such_ask")
    assert "no longer available" in r.json()["msg"]

    offer = await api.offer(gpu_name="RTX 4090")
    api.knobs.make_unavailable(1)
    new_id = await api.create(offer["id"], cancel_unavail=False)
    row = await api.show(new_id)
    assert (row["actual_status"], row["intended_status"]) == ("exited", "stopped")
    await api.manage(new_id, state="running")
    assert "Scheduling" in (await api.show(new_id))["status_msg"]


async def test_create_stopped_on_request(api: Api) -> None:
    new_id = await api.rent(target_state="stopped")
    await api.advance(600)
    row = await api.show(new_id)
    assert (row["actual_status"], row["intended_status"]) == ("exited", "stopped")


async def test_reboot_and_recycle(api: Api) -> None:
    new_id = await api.rent()
    r = await api.put(f"/api/v0/instances/reboot/{new_id}/", json={})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_args")  # not running yet
    await api.advance(65)
    r = await api.put(f"/api/v0/instances/reboot/{new_id}/", json={})
    assert r.json() == {"success": True}
    assert (await api.show(new_id))["actual_status"] == "rebooting"
    await api.advance(10)
    assert (await api.show(new_id))["actual_status"] == "running"
    r = await api.put(f"/api/v0/instances/recycle/{new_id}/", json={})
    assert (await api.show(new_id))["actual_status"] == "recycling"
    await api.advance(10)
    assert (await api.show(new_id))["actual_status"] == "loading"
    await api.advance(60)
    assert (await api.show(new_id))["actual_status"] == "running"
    r = await api.put("/api/v0/instances/recycle/999/", json={})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_id")


async def test_bulk_start_stop_and_destroy(api: Api) -> None:
    ids = [await api.rent("RTX 3090") for _ in range(3)]
    await api.advance(65)
    r = await api.put("/api/v0/instances/", json={"state": "stopped", "ids": ids[:2]})
    assert r.json() == {"success": True}
    states = [(await api.show(i))["actual_status"] for i in ids]
    assert states == ["exited", "exited", "running"]
    r = await api.delete("/api/v0/instances/", json={"instance_ids": ids})
    assert r.json() == {"success": True}
    assert [await api.show(i) for i in ids] == [None, None, None]
