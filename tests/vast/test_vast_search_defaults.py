"""ComfyUI offer defaults: what they filter, how a user overrides them, the CUDA floor."""

from __future__ import annotations

import pytest

from comfyfleet.vast.query import QueryError
from comfyfleet.vast.search import (
    OfferDefaults,
    comfy_offer_query,
    cuda_floor_from_image,
    describe_filters,
)

IMAGE = "vastai/comfy:v0.8.2-cuda-12.9-py312"


def test_defaults_for_a_comfy_image() -> None:
    assert comfy_offer_query("", image=IMAGE, disk_gb=80) == {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "external": {"eq": False},
        "reliability": {"gt": 0.98},
        "inet_down": {"gte": 200.0},
        "direct_port_count": {"gte": 4},
        "cuda_max_good": {"gte": 12.9},
        "num_gpus": {"eq": 1},
        "order": [["score", "desc"]],
        "type": "on-demand",
        "allocated_storage": 80.0,
    }


def test_user_terms_override_defaults_and_any_removes_them() -> None:
    wire = comfy_offer_query(
        "gpu_name=RTX_4090 num_gpus>=2 reliability>0.95 cuda_max_good=any verified=any",
        image=IMAGE,
        disk_gb=120,
        order="dph+",
        type="interruptible",
        limit=5,
    )
    assert wire["gpu_name"] == {"eq": "RTX 4090"}
    assert wire["num_gpus"] == {"gte": "2"}
    assert wire["reliability"] == {"gt": "0.95"}
    assert "cuda_max_good" not in wire and "verified" not in wire
    assert wire["inet_down"] == {"gte": 200.0}  # untouched defaults stay
    assert wire["order"] == [["dph_total", "asc"]]
    assert (wire["type"], wire["limit"], wire["allocated_storage"]) == ("bid", 5, 120.0)


def test_configurable_defaults() -> None:
    defaults = OfferDefaults(
        min_reliability=0.99,
        min_inet_down=500,
        min_direct_ports=8,
        extra={"compute_cap": {"gte": 750}},
    )
    wire = comfy_offer_query("", image=None, disk_gb=40, defaults=defaults)
    assert wire["reliability"] == {"gt": 0.99}
    assert wire["inet_down"] == {"gte": 500}
    assert wire["direct_port_count"] == {"gte": 8}
    assert wire["compute_cap"] == {"gte": 750}
    assert "cuda_max_good" not in wire  # no image, no floor


def test_bad_query_or_disk_is_a_usage_error() -> None:
    with pytest.raises(QueryError, match="'gpu'"):
        comfy_offer_query("gpu=RTX_4090", image=IMAGE)
    with pytest.raises(QueryError, match="disk"):
        comfy_offer_query("", image=IMAGE, disk_gb=0)


@pytest.mark.parametrize(
    ("image", "floor"),
    [
        ("vastai/comfy:v0.8.2-cuda-12.9-py312", 12.9),
        ("vastai/comfy:v0.8.2-cuda-13.2-py312", 13.2),
        ("vastai/pytorch:2.8.0-cu128-cuda-12.9-mini-py312-2025-09-01", 12.9),
        ("pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime", 12.4),
        ("ghcr.io/org/comfy:cu121", 12.1),
        ("nvidia/cuda:12.4.1-runtime-ubuntu22.04", 12.4),
        ("registry.example:5000/team/comfy:v1-cuda-12.6@sha256:abcd", 12.6),
        ("vastai/comfy", None),
        ("vastai/comfy:latest", None),
        ("registry.example:5000/comfy", None),
        ("vastai/comfy@sha256:abcd", None),
        ("org/app:v12.9", None),  # a version that is not a CUDA version
    ],
)
def test_cuda_floor_from_image(image: str, floor: float | None) -> None:
    assert cuda_floor_from_image(image) == floor


def test_describe_filters_shows_every_filter_as_a_term() -> None:
    query = comfy_offer_query(
        ["gpu_name in [RTX_4090,RTX_3090]", "verified=any", "geolocation notin [CN,RU]"]
    )
    assert describe_filters(query) == (
        "rentable=true external=false reliability>0.98 inet_down>=200.0 direct_port_count>=4 "
        'num_gpus=1 gpu_name in ["RTX 4090", "RTX 3090"] geolocation notin ["CN", "RU"]'
    )
