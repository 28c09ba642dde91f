"""Parsing the captured Vast answers into models, secrets dropped at the boundary."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from vast_helpers import load

from comfyfleet.errors import VastProtocolError
from comfyfleet.models.vast import InstanceStatus
from comfyfleet.vast import parse

WEB_PASSWORD = "sim-web-password-0001"  # what the fixtures' extra_env carries


def test_offers_fixture(vast_fixtures: Path) -> None:
    raw = load(vast_fixtures, "offers.json")
    offers = parse.parse_offers(raw)
    assert [o.id for o in offers] == [row["id"] for row in raw["offers"]]
    first = offers[0]
    assert (first.gpu_name, first.num_gpus, first.gpu_ram, first.cuda_max_good) == (
        "RTX 4090",
        1,
        24564,
        12.8,
    )
    assert first.dph_total == pytest.approx(0.321042)
    assert first.reliability == pytest.approx(0.9961)
    assert first.storage_dph(10) == pytest.approx(0.15 * 10 / 720)
    assert {o.gpu_name for o in offers} >= {"RTX 4090", "H100 SXM", "L40S"}


def test_loading_fixture_statuses_and_null_ports(vast_fixtures: Path) -> None:
    instances, token = parse.parse_instance_page(load(vast_fixtures, "instance-loading.json"))
    assert token is None
    created, loading = instances
    assert created.status is InstanceStatus.CREATING and created.ports == {}
    assert loading.status is InstanceStatus.LOADING and loading.ports == {}
    assert loading.host_port(8188) is None
    # no ports yet: SSH goes through Vast's proxy, one port up for a jupyter launch
    assert loading.ssh_endpoint() == ("ssh7.vast.ai", 30003)


def test_running_fixture_ports_and_stopped_instance(vast_fixtures: Path) -> None:
    instances, _ = parse.parse_instance_page(load(vast_fixtures, "instance-running.json"))
    stopped, running = instances
    assert stopped.status is InstanceStatus.STOPPED and stopped.ports == {}
    assert running.status is InstanceStatus.RUNNING
    assert running.host_port(8188) == 40188 and running.host_port(22) == 40122
    assert running.ports["72299/tcp"] == 40199
    assert running.ssh_endpoint() == ("203.0.113.15", 40122)


def test_strings_are_stripped(vast_fixtures: Path) -> None:
    raw = load(vast_fixtures, "instance-running.json")["instances"][1]
    raw["public_ipaddr"] = "203.0.113.15 \n"
    raw["ports"]["8188/tcp"][0]["HostPort"] = " 40188"
    instance = parse.parse_instance(raw)
    assert instance.public_ipaddr == "203.0.113.15"
    assert instance.ssh_endpoint() == ("203.0.113.15", 40122)
    assert instance.host_port(8188) == 40188


def test_extra_env_is_reduced_to_key_names(vast_fixtures: Path) -> None:
    raw = load(vast_fixtures, "instance-running.json")["instances"][1]
    instance = parse.parse_instance(raw)
    assert "WEB_PASSWORD" in instance.env_keys and "-p 8188:8188" in instance.env_keys
    for text in (
        repr(instance),
        str(instance),
        instance.model_dump_json(),
        json.dumps(instance.model_dump()),
    ):
        assert WEB_PASSWORD not in text
        assert raw["jupyter_token"] not in text


def test_extra_env_as_a_dict_is_scrubbed_too(vast_fixtures: Path) -> None:
    raw = copy.deepcopy(load(vast_fixtures, "instance-running.json")["instances"][1])
    raw["extra_env"] = dict(raw["extra_env"])
    instance = parse.parse_instance(raw)
    assert "WEB_PASSWORD" in instance.env_keys
    assert WEB_PASSWORD not in instance.model_dump_json()


def test_show_answers() -> None:
    assert parse.parse_show({"instances": None}) is None
    assert parse.parse_show({"instances": []}) is None
    shown = parse.parse_show({"instances": {"id": 7, "actual_status": "running"}})
    assert shown is not None and shown.id == 7


def test_user_drops_api_key() -> None:
    user = parse.parse_user(
        {"id": 42, "email": "a@example.com", "credit": 25.0, "api_key": "k" * 64, "sid": "x"}
    )
    assert user.credit == 25.0
    assert "k" * 64 not in repr(user) + user.model_dump_json()


def test_ssh_key_lists_accept_both_field_names_and_skip_deleted() -> None:
    keys = parse.parse_ssh_keys(
        [
            {"id": 1, "key": "ssh-ed25519 AAAA one", "created_at": 1.0, "deleted_at": None},
            {"id": 2, "public_key": "ssh-ed25519 AAAB two", "deleted_at": None},
            {"id": 3, "key": "ssh-ed25519 AAAC gone", "deleted_at": 5.0},
        ]
    )
    assert [(k.id, k.public_key) for k in keys] == [
        (1, "ssh-ed25519 AAAA one"),
        (2, "ssh-ed25519 AAAB two"),
    ]


def test_contract_id() -> None:
    assert parse.contract_id({"success": True, "new_contract": 31000002}) == 31000002
    assert parse.contract_id({"new_contract": "31000003"}) == 31000003
    assert parse.contract_id({"new_contract": True}) is None
    assert parse.contract_id({"success": False}) is None
    assert parse.contract_id(["x"]) is None


@pytest.mark.parametrize(
    ("call", "data", "fragment"),
    [
        (parse.parse_offers, {"bundles": []}, "no 'offers'"),
        (parse.parse_offers, {"offers": {}}, "not a list"),
        (parse.parse_offers, {"offers": [{"id": 5, "gpu_name": "X"}]}, "offer 5"),
        (parse.parse_instance_page, {"instances": [1]}, "expected an object"),
        (parse.parse_instance_page, {"instances": [], "next_token": []}, "next_token"),
        (parse.parse_ssh_keys, {"x": 1}, "JSON array"),
    ],
)
def test_malformed_answers_are_protocol_errors(call, data, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VastProtocolError, match=fragment):
        call(data)


def test_validation_errors_never_echo_values() -> None:
    secret = "s3cr3t-value-that-must-not-show"
    with pytest.raises(VastProtocolError) as info:
        parse.parse_user({"id": secret, "api_key": secret})
    assert secret not in str(info.value)
    assert "id" in str(info.value)
