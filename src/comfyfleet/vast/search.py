"""Offer-search defaults for ComfyUI work, on top of the CLI query language.

`comfy_offer_query` builds the wire query for `POST /bundles/` from a user query string and
these defaults, each of which the user overrides by naming the field (`reliability>0.95`) or
removes with `field=any` (`verified=any`):

| filter                         | why                                                        |
|--------------------------------|------------------------------------------------------------|
| `verified=true`                | Vast-verified hosts (as the official CLI)                   |
| `rentable=true`                | can be rented now (as the official CLI)                     |
| `external=false`               | Vast-listed offers only (as the official CLI)               |
| `reliability>0.98`             | hosts that stay up; configurable                            |
| `inet_down>=200` (Mb/s)        | model and image downloads in minutes, not hours             |
| `direct_port_count>=4`         | direct ports for SSH (22), ComfyUI (8188) and the portal     |
| `cuda_max_good>=<image CUDA>`  | the host driver can run the image (from its tag)            |
| `num_gpus=1`                   | ComfyUI runs one prompt on one GPU                          |

plus `allocated_storage` = the disk size to rent (prices include that storage, and hosts
without that much free disk drop out), order by `score` descending, type on-demand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from comfyfleet.vast.query import Filters, QueryError, build_query

DEFAULT_DISK_GB = 40.0

_CUDA_DOTTED = re.compile(r"(?:^|[-_.])cuda-?(\d{1,2})\.(\d{1,2})(?=$|[-_.])", re.IGNORECASE)
_CUDA_PACKED = re.compile(r"(?:^|[-_.])cu(\d{2})(\d)(?=$|[-_.])", re.IGNORECASE)
_LEADING_VERSION = re.compile(r"^(\d{1,2})\.(\d{1,2})(?=$|[-_.])")


def image_tag(image: str) -> str | None:
    """The tag of `repo[:tag][@digest]` (None when there is none); a registry port is not a tag."""
    name = image.strip().split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    return last.split(":", 1)[1] or None


def cuda_floor_from_image(image: str) -> float | None:
    """The CUDA version an image needs, read from its tag; None when the tag does not say.

    `vastai/comfy:v0.8.2-cuda-12.9-py312` -> 12.9, `pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime`
    -> 12.4, `...-cu128-...` -> 12.8, `nvidia/cuda:12.4.1-runtime-ubuntu22.04` -> 12.4. With
    several versions in one tag the highest wins (the image's own toolkit).
    """
    tag = image_tag(image)
    if not tag:
        return None
    found = [float(f"{a}.{b}") for a, b in _CUDA_DOTTED.findall(tag)]
    found += [float(f"{a}.{b}") for a, b in _CUDA_PACKED.findall(tag)]
    repo = image.strip().split("@", 1)[0].rsplit(":", 1)[0]
    if repo.rsplit("/", 1)[-1].lower() == "cuda":
        match = _LEADING_VERSION.match(tag)
        if match:
            found.append(float(f"{match.group(1)}.{match.group(2)}"))
    return max(found) if found else None


@dataclass(frozen=True)
class OfferDefaults:
    """The default filters for ComfyUI offers (see the module docstring)."""

    min_reliability: float = 0.98
    min_inet_down: float = 200.0  # Mb/s
    min_direct_ports: int = 4
    num_gpus: int = 1
    order: str = "score-"
    extra: Filters = field(default_factory=dict)  # more default filters, wire form

    def filters(self, image: str | None) -> Filters:
        out: Filters = {
            "verified": {"eq": True},
            "rentable": {"eq": True},
            "external": {"eq": False},
            "reliability": {"gt": self.min_reliability},
            "inet_down": {"gte": self.min_inet_down},
            "direct_port_count": {"gte": self.min_direct_ports},
            "num_gpus": {"eq": self.num_gpus},
        }
        floor = cuda_floor_from_image(image) if image else None
        if floor is not None:
            out["cuda_max_good"] = {"gte": floor}
        out.update({k: dict(v) for k, v in self.extra.items()})
        return out


def comfy_offer_query(
    query: str | Iterable[str] = "",
    *,
    image: str | None = None,
    disk_gb: float = DEFAULT_DISK_GB,
    order: str | None = None,
    type: str = "on-demand",
    limit: int | None = None,
    defaults: OfferDefaults | None = None,
) -> dict[str, object]:
    """The wire query for ComfyUI offers: `query` over the ComfyUI defaults.

    `image` gives the CUDA floor; `disk_gb` the storage to rent (`allocated_storage`); `order`
    (CLI order string) replaces the default order by score. QueryError on a bad query.
    """
    defaults = defaults or OfferDefaults()
    if disk_gb <= 0:
        raise QueryError(f"disk size must be positive, got {disk_gb} GB")
    return build_query(
        query,
        defaults=defaults.filters(image),
        order=order if order is not None else defaults.order,
        type=type,
        limit=limit,
        storage_gb=disk_gb,
    )


_SHOWN_OPS = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# Wire keys of a search that are no filters.
_NOT_FILTERS = frozenset({"order", "type", "limit", "allocated_storage"})


def describe_filters(query: Mapping[str, object]) -> str:
    """The filters of a wire query as `field op value` terms (wire units: gpu_ram in MB), for
    messages that say what Vast was asked for."""
    terms: list[str] = []
    for name, ops in query.items():
        if name in _NOT_FILTERS or not isinstance(ops, Mapping):
            continue
        for op, value in ops.items():
            shown = json.dumps(value) if isinstance(value, bool | list) else str(value)
            terms.append(f"{name}{_SHOWN_OPS.get(str(op), f' {op} ')}{shown}")
    return " ".join(terms)


#: What to say when no offer matches.
NO_MATCH_HINT = (
    "relax a filter, or drop a ComfyUI default by naming it with =any "
    "(e.g. reliability=any, inet_down=any, verified=any)"
)
