"""Offer search: Vast's wire query semantics, prices for the asked storage, the market."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.sandbox.vast.server import SandboxVast

from .conftest import Api, client_for


def _country(offer: dict[str, Any]) -> str:
    return str(offer["geolocation"]).rsplit(",", 1)[-1].strip()


async def test_numbers_and_numeric_strings_filter_alike(api: Api) -> None:
    everything = await api.search()
    as_string = await api.search(num_gpus={"gte": "2"}, dph_total={"lt": "3.5"})
    as_number = await api.search(num_gpus={"gte": 2}, dph_total={"lt": 3.5})
    expected = [o["id"] for o in everything if o["num_gpus"] >= 2 and o["dph_total"] < 3.5]
    assert [o["id"] for o in as_string] == [o["id"] for o in as_number]
    assert sorted(o["id"] for o in as_string) == sorted(expected)
    assert 0 < len(expected) < len(everything)


@pytest.mark.parametrize(
    ("op", "value", "check"),
    [
        ("eq", "RTX 4090", lambda v: v == "RTX 4090"),
        ("neq", "RTX 4090", lambda v: v != "RTX 4090"),
        ("in", ["RTX 3090", "RTX 5090"], lambda v: v in ("RTX 3090", "RTX 5090")),
        ("notin", ["RTX 3090", "RTX 5090"], lambda v: v not in ("RTX 3090", "RTX 5090")),
    ],
)
async def test_string_operators(api: Api, op: str, value: Any, check: Any) -> None:
    everything = await api.search()
    got = await api.search(gpu_name={op: value})
    assert sorted(o["id"] for o in got) == sorted(
        o["id"] for o in everything if check(o["gpu_name"])
    )
    assert got


@pytest.mark.parametrize(
    ("field", "op", "value", "check"),
    [
        ("reliability", "gt", "0.99", lambda o: o["reliability2"] > 0.99),
        ("cuda_max_good", "gte", "12.8", lambda o: o["cuda_max_good"] >= 12.8),
        ("cuda_max_good", "lt", 12.5, lambda o: o["cuda_max_good"] < 12.5),
        ("gpu_ram", "gte", 24000.0, lambda o: o["gpu_ram"] >= 24000),
        ("gpu_ram_GB", "gte", "40", lambda o: o["gpu_ram"] >= 40000),
        ("inet_down", "lte", "500", lambda o: o["inet_down"] <= 500),
        ("direct_port_count", "eq", "0", lambda o: o["direct_port_count"] == 0),
        ("verified", "eq", False, lambda o: o["verification"] != "verified"),
        ("verified", "eq", "true", lambda o: o["verification"] == "verified"),
        ("datacenter", "eq", True, lambda o: o["hosting_type"] == 1),
        ("geolocation", "in", ["US", "CA"], lambda o: _country(o) in ("US", "CA")),
        ("geolocation", "notin", ["US"], lambda o: _country(o) != "US"),
        ("geolocation", "eq", "Texas, US", lambda o: o["geolocation"] == "Texas, US"),
        ("driver_version", "gte", 570000000, lambda o: o["driver_vers"] >= 570000000),
        ("driver_version", "gte", "570.0.0", lambda o: o["driver_vers"] >= 570000000),
        ("duration", "gte", 30 * 86400, lambda o: o["duration"] >= 30 * 86400),
        ("compute_cap", "gte", "890", lambda o: o["compute_cap"] >= 890),
        ("id", "eq", 20000000, lambda o: o["id"] == 20000000),
    ],
)
async def test_fields_and_virtual_fields(
    api: Api, field: str, op: str, value: Any, check: Any
) -> None:
    everything = await api.search()
    got = await api.search(**{field: {op: value}})
    assert sorted(o["id"] for o in got) == sorted(o["id"] for o in everything if check(o))
    assert got, "the market should have matching offers"


async def test_reference_wire_example(api: Api) -> None:
    query = {
        "verified": {"eq": True},
        "external": {"eq": False},
        "rentable": {"eq": True},
        "gpu_name": {"eq": "RTX 4090"},
        "num_gpus": {"gte": "1"},
        "dph_total": {"lt": "0.5"},
        "reliability": {"gt": "0.98"},
        "order": [["score", "desc"]],
        "type": "on-demand",
        "allocated_storage": 5.0,
    }
    offers = await api.search(**query)
    assert offers
    for offer in offers:
        assert offer["gpu_name"] == "RTX 4090" and offer["dph_total"] < 0.5
        assert offer["reliability2"] > 0.98 and offer["verification"] == "verified"
    scores = [o["score"] for o in offers]
    assert scores == sorted(scores, reverse=True)
    assert [o["rn"] for o in offers] == list(range(1, len(offers) + 1))


async def test_order_limit_and_new_search_endpoint(api: Api) -> None:
    cheap = await api.search(order=[["dph_total", "asc"]], limit=7)
    prices = [o["dph_total"] for o in cheap]
    assert len(cheap) == 7 and prices == sorted(prices)
    everything = await api.search()
    assert prices == sorted(o["dph_total"] for o in everything)[:7]
    r = await api.put(
        "/api/v0/search/asks/",
        json={"select_cols": ["*"], "q": {"order": [["dph_total", "asc"]], "limit": 7}},
    )
    assert [o["id"] for o in r.json()["offers"]] == [o["id"] for o in cheap]
    by_two = await api.search(order=[["num_gpus", "desc"], ["dph_total", "asc"]])
    keys = [(-o["num_gpus"], o["dph_total"]) for o in by_two]
    assert keys == sorted(keys)


async def test_prices_are_recomputed_for_the_allocated_storage(api: Api) -> None:
    offers = await api.search(allocated_storage=500.0)
    assert offers
    for offer in offers:
        storage = round(offer["storage_cost"] * 500.0 / 720, 6)
        assert offer["storage_total_cost"] == storage
        assert offer["dph_total"] == pytest.approx(offer["dph_base"] + storage, abs=2e-6)
        assert offer["disk_space"] >= 500.0
        assert offer["search"]["totalHour"] == offer["dph_total"]
    small = {o["id"]: o for o in await api.search(allocated_storage=5.0)}
    assert len(small) > len(offers)  # machines with less than 500 GB free drop out


async def test_bid_type_prices_from_the_minimum_bid(api: Api) -> None:
    bids = await api.search(type="bid", allocated_storage=10.0)
    for offer in bids:
        storage = round(offer["storage_cost"] * 10.0 / 720, 6)
        assert offer["is_bid"] is True
        assert offer["dph_total"] == pytest.approx(offer["min_bid"] + storage, abs=2e-6)
    r = await api.post("/api/v0/bundles/", json={"type": "spot"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"gpu_colour": {"eq": "red"}}, "gpu_colour"),
        ({"num_gpus": {"about": 2}}, "about"),
        ({"num_gpus": {"gte": "two"}}, "num_gpus"),
        ({"order": [["flavour", "asc"]]}, "flavour"),
    ],
)
async def test_bad_queries_are_refused_naming_the_problem(
    api: Api, query: dict[str, Any], named: str
) -> None:
    r = await api.post("/api/v0/bundles/", json=query)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request" and named in r.json()["msg"]


async def test_the_market_is_varied_and_deterministic_by_seed(api: Api) -> None:
    offers = await api.search()
    names = {o["gpu_name"] for o in offers}
    assert {"RTX 3090", "RTX 4090", "RTX 5090", "L40S", "H100 SXM"} <= names
    assert any(n.startswith("A100") for n in names)
    cudas = {o["cuda_max_good"] for o in offers}
    assert min(cudas) <= 12.3 and max(cudas) >= 13.0
    assert {o["num_gpus"] for o in offers} >= {1, 2, 4}
    assert {o["verification"] for o in offers} >= {"verified", "unverified"}
    assert len({_country(o) for o in offers}) >= 8

    async def market(seed: int) -> list[tuple[int, str, float]]:
        async with SandboxVast(seed=seed) as cloud, client_for(cloud) as client:
            r = await client.post("/api/v0/bundles/", json={"order": [["id", "asc"]]})
            return [(o["id"], o["gpu_name"], o["dph_base"]) for o in r.json()["offers"]]

    assert await market(5) == await market(5)
    assert await market(5) != await market(6)


async def test_offer_ids_are_single_use_and_the_machine_reoffers(api: Api) -> None:
    offer = (await api.search(id={"eq": 20000000}))[0]
    machine = offer["machine_id"]
    assert offer["rented"] is False
    await api.create(offer["id"])
    again = await api.search(machine_id={"eq": machine})
    assert len(again) == 1
    assert again[0]["id"] != offer["id"] and again[0]["rented"] is True
    assert again[0]["gpu_ids"] != offer["gpu_ids"]
    assert not await api.search(id={"eq": offer["id"]})
    r = await api.put(f"/api/v0/asks/{offer['id']}/", json={"image": "x"})
    assert r.status_code == 404


async def test_a_fully_rented_machine_leaves_the_market(api: Api) -> None:
    offer = (await api.search(gpu_name={"eq": "L40S"}, num_gpus={"eq": 4}, gpu_frac={"eq": 1.0}))[0]
    await api.create(offer["id"])
    assert not await api.search(machine_id={"eq": offer["machine_id"]})
