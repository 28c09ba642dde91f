"""The offer query language against the reference's examples (exact wire dicts)."""

from __future__ import annotations

from typing import Any

import pytest

from comfyfleet.errors import UsageError
from comfyfleet.vast.query import (
    FIELDS,
    OPERATORS,
    QueryError,
    build_query,
    driver_version_number,
    parse_order,
    parse_terms,
)

CLI_DEFAULTS = {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}}


def test_reference_example_is_exactly_what_the_cli_sends() -> None:
    # reference/vast-api.md §3.2, "Example wire query"
    assert build_query("gpu_name=RTX_4090 num_gpus>=1 dph<0.5 reliability>0.98") == {
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


def _filters(query: str) -> dict[str, Any]:
    wire = build_query(query, defaults={})
    return {k: v for k, v in wire.items() if k not in ("order", "type", "allocated_storage")}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # the CLI help's examples
        (
            "reliability > 0.98 num_gpus=1 gpu_name=RTX_3090",
            {
                "reliability": {"gt": "0.98"},
                "num_gpus": {"eq": "1"},
                "gpu_name": {"eq": "RTX 3090"},
            },
        ),
        (
            "compute_cap > 610 total_flops > 5 datacenter=True",
            {"compute_cap": {"gt": "610"}, "total_flops": {"gt": "5"}, "datacenter": {"eq": True}},
        ),
        (
            "reliability>0.99 num_gpus=4 geolocation in [TW,SE]",
            {
                "reliability": {"gt": "0.99"},
                "num_gpus": {"eq": "4"},
                "geolocation": {"in": ["TW", "SE"]},
            },
        ),
        (
            'reliability>0.99 gpu_name in ["RTX 4090", "RTX 3090"] geolocation notin [CN,VN]',
            {
                "reliability": {"gt": "0.99"},
                "gpu_name": {"in": ["RTX 4090", "RTX 3090"]},
                "geolocation": {"notin": ["CN", "VN"]},
            },
        ),
        (
            "disk_space>146 duration>24 gpu_ram>10 cuda_vers>=12.1 direct_port_count>=2 "
            "driver_version >= 535.86.05",
            {
                "disk_space": {"gt": "146"},
                "duration": {"gt": 24 * 86400.0},
                "gpu_ram": {"gt": 10000.0},
                "cuda_max_good": {"gte": "12.1"},
                "direct_port_count": {"gte": "2"},
                "driver_version": {"gte": 535086005},
            },
        ),
        (
            "reliability > 0.99  num_gpus>=4 verified=False",
            {"reliability": {"gt": "0.99"}, "num_gpus": {"gte": "4"}, "verified": {"eq": False}},
        ),
        ("cpu_arch=arm64", {"cpu_arch": {"eq": "arm64"}}),
        # units: GB typed, MB sent (floats); days typed, seconds sent
        (
            "cpu_ram>=64 gpu_total_ram<=48.5",
            {"cpu_ram": {"gte": 64000.0}, "gpu_total_ram": {"lte": 48500.0}},
        ),
        ("gpu_ram in [24,48]", {"gpu_ram": {"in": [24000.0, 48000.0]}}),
        # aliases
        (
            "dph<=0.4 dlperf_usd>100 flops_usd>=2 display_active=false",
            {
                "dph_total": {"lte": "0.4"},
                "dlperf_per_dphtotal": {"gt": "100"},
                "flops_per_dphtotal": {"gte": "2"},
                "gpu_display_active": {"eq": False},
            },
        ),
        # null, quoted values, several terms on one field
        ("cluster_id=None mobo_name=null", {"cluster_id": {"eq": None}, "mobo_name": {"eq": None}}),
        ('gpu_name="RTX A6000"', {"gpu_name": {"eq": "RTX A6000"}}),
        ("gpu_name='H100_SXM'", {"gpu_name": {"eq": "H100 SXM"}}),
        ("num_gpus>=2 num_gpus<=4", {"num_gpus": {"gte": "2", "lte": "4"}}),
        ("geolocation in US", {"geolocation": {"in": ["US"]}}),
        ("machine_id nin [302,402]", {"machine_id": {"notin": ["302", "402"]}}),
        ("gpu_name=RTX_4090 gpu_name=any", {}),
        ("", {}),
    ],
)
def test_queries(query: str, expected: dict[str, Any]) -> None:
    assert _filters(query) == expected


@pytest.mark.parametrize(
    ("spelling", "wire"),
    [
        ("=", "eq"),
        ("==", "eq"),
        (" eq ", "eq"),
        ("!=", "neq"),
        (" neq ", "neq"),
        (" noteq ", "neq"),
        (" not eq ", "neq"),
        (">", "gt"),
        (" gt ", "gt"),
        (">=", "gte"),
        (" gte ", "gte"),
        ("<", "lt"),
        (" lt ", "lt"),
        ("<=", "lte"),
        (" lte ", "lte"),
    ],
)
def test_every_scalar_operator(spelling: str, wire: str) -> None:
    assert _filters(f"num_gpus{spelling}2") == {"num_gpus": {wire: "2"}}


@pytest.mark.parametrize(
    ("spelling", "wire"),
    [(" in ", "in"), (" notin ", "notin"), (" not in ", "notin"), (" nin ", "notin")],
)
def test_every_list_operator(spelling: str, wire: str) -> None:
    assert _filters(f"gpu_name{spelling}[RTX_4090,RTX_3090]") == {
        "gpu_name": {wire: ["RTX 4090", "RTX 3090"]}
    }


def test_operator_table_is_the_references() -> None:
    assert set(OPERATORS.values()) == {"eq", "neq", "gt", "gte", "lt", "lte", "in", "notin"}
    assert len(OPERATORS) == 19


@pytest.mark.parametrize("wildcard", ["any", "*", "?"])
def test_any_removes_a_default_filter(wildcard: str) -> None:
    wire = build_query(f"verified={wildcard} rentable=false")
    assert "verified" not in wire
    assert wire["rentable"] == {"eq": False}
    assert wire["external"] == {"eq": False}


def test_a_term_replaces_the_default_on_its_field_instead_of_adding_to_it() -> None:
    wire = build_query("reliability>=0.9", defaults={"reliability": {"gt": 0.98}})
    assert wire["reliability"] == {"gte": "0.9"}


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("dph_total,score-", [["dph_total", "asc"], ["score", "desc"]]),
        ("score-", [["score", "desc"]]),
        ("-dph", [["dph_total", "desc"]]),
        ("num_gpus+,total_flops-", [["num_gpus", "asc"], ["total_flops", "desc"]]),
        ("dlperf_usd-, inet_down", [["dlperf_per_dphtotal", "desc"], ["inet_down", "asc"]]),
        ("", []),
    ],
)
def test_order_strings(order: str, expected: list[list[str]]) -> None:
    assert parse_order(order) == expected


@pytest.mark.parametrize(
    ("kind", "wire"),
    [
        ("on-demand", "on-demand"),
        ("bid", "bid"),
        ("interruptible", "bid"),
        ("reserved", "reserved"),
    ],
)
def test_offer_types_limit_and_storage(kind: str, wire: str) -> None:
    query = build_query("", type=kind, limit=20, storage_gb=80)
    assert (query["type"], query["limit"], query["allocated_storage"]) == (wire, 20, 80.0)


def test_unknown_field_is_an_error_naming_it_and_listing_valid_fields() -> None:
    with pytest.raises(QueryError) as info:
        parse_terms("gpu_nme=RTX_4090")
    error = info.value
    assert isinstance(error, UsageError) and error.exit_code == 2
    assert "'gpu_nme'" in error.message and "gpu_name" in error.message  # did you mean
    assert error.hint is not None
    for name in ("gpu_name", "dph_total", "cuda_max_good", "reliability", "dph", "cuda_vers"):
        assert name in error.hint


def test_unknown_order_field_is_an_error() -> None:
    with pytest.raises(QueryError, match="'speed'"):
        parse_order("speed-")


@pytest.mark.parametrize("bad", ["=>", "=<", "<>", "!", "=!", "===", " like ", " between "])
def test_bad_operator_is_an_error_listing_valid_ones(bad: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_terms(f"num_gpus{bad}1")
    assert "operator" in info.value.message
    assert info.value.hint is not None and ">=" in info.value.hint and "notin" in info.value.hint


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("num_gpus", "no operator"),
        ("num_gpus>=", "no value"),
        ("num_gpus>=abc", "takes a number"),
        ("gpu_ram>=lots", "takes a number"),
        ("verified=yes", "true or false"),
        ("gpu_name>any", "only works with '='"),
        ("gpu_name=[A,B]", "needs 'in'"),
        ("gpu_name in [A,B", "unclosed list"),
        ('gpu_name="RTX 4090', "unclosed quote"),
        ("driver_version>=535.86", "X.Y.Z"),
        ("gpu_name in []", "empty list"),
        ('gpu_name="A"x', "unexpected"),
        (">=4", "field name"),
    ],
)
def test_malformed_terms(query: str, fragment: str) -> None:
    with pytest.raises(QueryError, match=fragment):
        parse_terms(query)


def test_bad_type_and_limit() -> None:
    with pytest.raises(QueryError, match="offer type"):
        build_query("", type="spot")
    with pytest.raises(QueryError, match="limit"):
        build_query("", limit=0)


def test_driver_version_number() -> None:
    assert driver_version_number("535.86.05") == 535086005
    assert driver_version_number("570.124.04") == 570124004


def test_every_cli_field_is_known() -> None:
    # the official CLI's offers_fields (reference §3.2)
    cli = str.split(
        "bw_nvlink compute_cap cpu_arch cpu_cores cpu_cores_effective cpu_ghz cpu_ram "
        "cuda_max_good datacenter direct_port_count driver_version disk_bw disk_space dlperf "
        "dlperf_per_dphtotal dph_total duration external flops_per_dphtotal gpu_arch "
        "gpu_display_active gpu_frac gpu_mem_bw gpu_name gpu_ram gpu_total_ram gpu_max_power "
        "gpu_max_temp has_avx host_id id inet_down inet_down_cost inet_up inet_up_cost "
        "machine_id min_bid mobo_name num_gpus pci_gen pcie_bw reliability rentable rented "
        "storage_cost static_ip total_flops ubuntu_version verification verified vms_enabled "
        "geolocation cluster_id"
    )
    assert set(cli) == set(FIELDS)


def test_query_given_as_argv_words() -> None:
    assert _filters(["gpu_name=RTX_4090", "dph<0.5"]) == {  # type: ignore[arg-type]
        "gpu_name": {"eq": "RTX 4090"},
        "dph_total": {"lt": "0.5"},
    }


def test_cli_defaults_constant() -> None:
    assert {k: v for k, v in build_query("").items() if k in CLI_DEFAULTS} == CLI_DEFAULTS
