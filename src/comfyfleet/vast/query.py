"""The `vastai search offers` query language, turned into Vast's wire query.

A query is a list of terms `field op value`, e.g.
`gpu_name=RTX_4090 num_gpus>=1 dph<0.5 reliability>0.98 geolocation in [US,CA]`.
The translation follows the official CLI (reference/vast-api.md §3.2):

- operators `=`/`==`/`eq`, `!=`/`neq`/`noteq`/`not eq`, `>`/`gt`, `>=`/`gte`, `<`/`lt`,
  `<=`/`lte`, `in`, `notin`/`not in`/`nin`; lists `[a,b]` (or `a,b`) for `in`/`notin`;
- values may be quoted (`"RTX 4090"`); underscores become spaces (`RTX_4090` -> `RTX 4090`);
  `true`/`false` become booleans, `None`/`null` becomes null; other values stay strings, as
  the CLI sends them (the server compares numerically);
- `cpu_ram`, `gpu_ram`, `gpu_total_ram` are typed in GB and sent in MB (x1000, as floats);
  `duration` is typed in days and sent in seconds;
- aliases: `dph` -> `dph_total`, `cuda_vers` -> `cuda_max_good`, `dlperf_usd` ->
  `dlperf_per_dphtotal`, `flops_usd` -> `flops_per_dphtotal`, `display_active` ->
  `gpu_display_active` (plus `dphtotal`, `reliability2`);
- `driver_version>=535.86.05` is sent as the integer 535086005;
- `field=any` (or `*`, `?`) removes the filter on that field, default filters included.

Unlike the CLI, an unknown field, an unknown operator or a malformed term is an error
(`QueryError`) that names it and lists what is valid. Terms on a field replace any default
filter on that field; several terms on one field combine (`num_gpus>=2 num_gpus<=4`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from comfyfleet.errors import UsageError


class QueryError(UsageError):
    """An offer query that cannot be translated (unknown field or operator, bad value)."""


_NUMBER = "number"
_BOOL = "bool"
_TEXT = "text"

#: Every field the official CLI knows for offers, with the kind of value it takes.
FIELDS: dict[str, str] = {
    "bw_nvlink": _NUMBER,
    "cluster_id": _NUMBER,
    "compute_cap": _NUMBER,
    "cpu_arch": _TEXT,
    "cpu_cores": _NUMBER,
    "cpu_cores_effective": _NUMBER,
    "cpu_ghz": _NUMBER,
    "cpu_ram": _NUMBER,
    "cuda_max_good": _NUMBER,
    "datacenter": _BOOL,
    "direct_port_count": _NUMBER,
    "disk_bw": _NUMBER,
    "disk_space": _NUMBER,
    "dlperf": _NUMBER,
    "dlperf_per_dphtotal": _NUMBER,
    "dph_total": _NUMBER,
    "driver_version": _TEXT,
    "duration": _NUMBER,
    "external": _BOOL,
    "flops_per_dphtotal": _NUMBER,
    "geolocation": _TEXT,
    "gpu_arch": _TEXT,
    "gpu_display_active": _BOOL,
    "gpu_frac": _NUMBER,
    "gpu_max_power": _NUMBER,
    "gpu_max_temp": _NUMBER,
    "gpu_mem_bw": _NUMBER,
    "gpu_name": _TEXT,
    "gpu_ram": _NUMBER,
    "gpu_total_ram": _NUMBER,
    "has_avx": _NUMBER,  # 0/1 on the wire; true/false are accepted too
    "host_id": _NUMBER,
    "id": _NUMBER,
    "inet_down": _NUMBER,
    "inet_down_cost": _NUMBER,
    "inet_up": _NUMBER,
    "inet_up_cost": _NUMBER,
    "machine_id": _NUMBER,
    "min_bid": _NUMBER,
    "mobo_name": _TEXT,
    "num_gpus": _NUMBER,
    "pci_gen": _NUMBER,
    "pcie_bw": _NUMBER,
    "reliability": _NUMBER,
    "rentable": _BOOL,
    "rented": _BOOL,
    "static_ip": _BOOL,
    "storage_cost": _NUMBER,
    "total_flops": _NUMBER,
    "ubuntu_version": _TEXT,
    "verification": _TEXT,
    "verified": _BOOL,
    "vms_enabled": _BOOL,
}

ALIASES: dict[str, str] = {
    "cuda_vers": "cuda_max_good",
    "display_active": "gpu_display_active",
    "dlperf_usd": "dlperf_per_dphtotal",
    "dph": "dph_total",
    "dphtotal": "dph_total",
    "flops_usd": "flops_per_dphtotal",
    "reliability2": "reliability",
}

#: Typed unit -> wire unit: GB -> MB for memory, days -> seconds for duration.
MULTIPLIERS: dict[str, float] = {
    "cpu_ram": 1000.0,
    "gpu_ram": 1000.0,
    "gpu_total_ram": 1000.0,
    "duration": 86400.0,
}

#: Offer fields that can order results without being filters.
ORDER_ONLY_FIELDS = frozenset({"score", "dph_base", "storage_total_cost", "vram_costperhour"})

OPERATORS: dict[str, str] = {
    "=": "eq",
    "==": "eq",
    "eq": "eq",
    "!=": "neq",
    "neq": "neq",
    "noteq": "neq",
    "not eq": "neq",
    ">": "gt",
    "gt": "gt",
    ">=": "gte",
    "gte": "gte",
    "<": "lt",
    "lt": "lt",
    "<=": "lte",
    "lte": "lte",
    "in": "in",
    "notin": "notin",
    "not in": "notin",
    "nin": "notin",
}
_LIST_OPS = frozenset({"in", "notin"})
_WILDCARDS = frozenset({"any", "*", "?"})

OFFER_TYPES: dict[str, str] = {
    "on-demand": "on-demand",
    "ondemand": "on-demand",
    "on_demand": "on-demand",
    "bid": "bid",
    "interruptible": "bid",
    "reserved": "reserved",
}

_FIELD_RE = re.compile(r"[A-Za-z0-9_]+")
_SYMBOL_OP_RE = re.compile(r"\s*([=<>!]+)\s*")
_WORD_OP_RE = re.compile(r"\s+(not\s+eq|not\s+in|[A-Za-z]+)(?=[\s\[\"'])\s*")

Filters = dict[str, dict[str, Any]]


class _Any:
    """The wildcard value: `field=any` removes the filter on `field`."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()


@dataclass(frozen=True)
class Term:
    """One parsed `field op value` term; `value` is ANY for a wildcard."""

    field: str  # canonical wire name (aliases resolved)
    op: str  # wire operator: eq, neq, gt, gte, lt, lte, in, notin
    value: Any


def valid_fields() -> list[str]:
    """Every accepted field name, aliases included, sorted."""
    return sorted({*FIELDS, *ALIASES})


def canonical_field(name: str, *, order: bool = False) -> str:
    """The wire name of a field or alias; an unknown name raises QueryError."""
    field = ALIASES.get(name, name)
    if field in FIELDS or (order and field in ORDER_ONLY_FIELDS):
        return field
    known = valid_fields() + (sorted(ORDER_ONLY_FIELDS) if order else [])
    close = difflib.get_close_matches(name, known, n=3)
    guess = f" (did you mean {', '.join(close)}?)" if close else ""
    raise QueryError(
        f"unknown offer field {name!r}{guess}",
        hint="valid fields: " + ", ".join(known),
    )


def parse_terms(query: str | Iterable[str]) -> list[Term]:
    """Split a query into terms; unknown fields, operators and bad values raise QueryError."""
    text = query if isinstance(query, str) else " ".join(query)
    text = text.strip()
    terms: list[Term] = []
    pos = 0
    while pos < len(text):
        start = pos
        match = _FIELD_RE.match(text, pos)
        if not match:
            raise QueryError(
                f"expected a field name at {text[pos:]!r}",
                hint="write terms as field op value, e.g. gpu_name=RTX_4090 dph<0.5",
            )
        name = match.group()
        pos = match.end()
        op_text, pos = _read_operator(text, pos, name)
        raw, quoted, pos = _read_value(text, pos, name, op_text)
        terms.append(_make_term(name, op_text, raw, quoted, text[start:pos]))
        if pos < len(text) and not text[pos].isspace():
            raise QueryError(
                f"unexpected {text[pos:]!r} after the term {text[start:pos]!r}",
                hint="separate terms with spaces; quote values that hold spaces",
            )
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return terms


def _read_operator(text: str, pos: int, name: str) -> tuple[str, int]:
    match = _SYMBOL_OP_RE.match(text, pos) or _WORD_OP_RE.match(text, pos)
    if not match:
        raise QueryError(
            f"the term for {name!r} has no operator",
            hint="valid operators: " + ", ".join(OPERATORS),
        )
    op_text = " ".join(match.group(1).lower().split())
    if op_text not in OPERATORS:
        raise QueryError(
            f"unknown operator {match.group(1)!r} after {name!r}",
            hint="valid operators: " + ", ".join(OPERATORS),
        )
    return op_text, match.end()


def _read_value(text: str, pos: int, name: str, op: str) -> tuple[str, bool, int]:
    """The raw value text, whether it was quoted, and the position after it."""
    if pos >= len(text):
        raise QueryError(f"no value after {name} {op}", hint="e.g. num_gpus>=1 or gpu_name=any")
    first = text[pos]
    if first == "[":
        end = text.find("]", pos)
        if end < 0:
            raise QueryError(f"unclosed list after {name} {op}: {text[pos:]!r}")
        return text[pos : end + 1], False, end + 1
    if first in "\"'":
        end = text.find(first, pos + 1)
        if end < 0:
            raise QueryError(f"unclosed quote after {name} {op}: {text[pos:]!r}")
        return text[pos + 1 : end], True, end + 1
    end = pos
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[pos:end], False, end


def _make_term(name: str, op_text: str, raw: str, quoted: bool, source: str) -> Term:
    field = canonical_field(name)
    op = OPERATORS[op_text]
    is_list = not quoted and raw.startswith("[")
    if not quoted and raw in _WILDCARDS:
        if op != "eq":
            raise QueryError(f"{source!r}: 'any' only works with '=' (it removes the filter)")
        return Term(field, op, ANY)
    if op in _LIST_OPS:
        items = [_unquote(x.strip()) for x in raw.strip("[]").split(",")] if not quoted else [raw]
        items = [x for x in items if x]
        if not items:
            raise QueryError(f"{source!r}: empty list")
        return Term(field, op, [_convert(field, item, source, scalar=False) for item in items])
    if is_list:
        raise QueryError(f"{source!r}: a list needs 'in' or 'notin'")
    if not raw:
        raise QueryError(f"{source!r}: empty value")
    return Term(field, op, _convert(field, raw, source, scalar=True))


def _unquote(item: str) -> str:
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "\"'":
        return item[1:-1]
    return item


def _convert(field: str, raw: str, source: str, *, scalar: bool) -> Any:
    if field == "driver_version" and "." in raw:
        return driver_version_number(raw)
    value = raw.replace("_", " ")
    if field in MULTIPLIERS:
        return _number(value, field, source) * MULTIPLIERS[field]
    if scalar and value in ("true", "True"):
        return True
    if scalar and value in ("false", "False"):
        return False
    if scalar and value in ("None", "null"):
        return None
    if scalar and FIELDS[field] == _BOOL:
        raise QueryError(f"{source!r}: {field} takes true or false, not {raw!r}")
    if FIELDS[field] == _NUMBER:
        _number(value, field, source)  # checked, but sent as typed (a string), like the CLI
    return value


def _number(value: str, field: str, source: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise QueryError(f"{source!r}: {field} takes a number, not {value!r}") from None


def driver_version_number(version: str) -> int:
    """`535.86.05` -> 535086005, the integer form Vast compares driver versions in."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        raise QueryError(
            f"driver_version {version!r} is not of the form X.Y.Z", hint="e.g. 535.86.05"
        )
    return int("".join(p.zfill(3) for p in parts))


def apply_terms(terms: Iterable[Term], defaults: Mapping[str, Mapping[str, Any]]) -> Filters:
    """Defaults overlaid with terms: a term on a field replaces its default; `any` removes it."""
    terms = list(terms)
    mentioned = {t.field for t in terms}
    filters: Filters = {k: dict(v) for k, v in defaults.items() if k not in mentioned}
    for term in terms:
        if term.value is ANY:
            filters.pop(term.field, None)
            continue
        filters.setdefault(term.field, {})[term.op] = term.value
    return filters


def parse_order(order: str) -> list[list[str]]:
    """`'dph_total,score-'` -> `[["dph_total", "asc"], ["score", "desc"]]`.

    A `-` before or after a name sorts descending, `+` ascending (the default); aliases are
    resolved; unknown fields raise QueryError.
    """
    out: list[list[str]] = []
    for item in order.split(","):
        name = item.strip()
        if not name:
            continue
        direction = "asc"
        if name.strip("-") != name:
            direction, name = "desc", name.strip("-")
        if name.strip("+") != name:
            direction, name = "asc", name.strip("+")
        out.append([canonical_field(name.strip(), order=True), direction])
    return out


def offer_type(name: str) -> str:
    """The wire offer type: on-demand, bid (interruptible) or reserved."""
    key = name.strip().lower()
    if key not in OFFER_TYPES:
        raise QueryError(
            f"unknown offer type {name!r}", hint="use on-demand, bid (interruptible) or reserved"
        )
    return OFFER_TYPES[key]


CLI_DEFAULT_FILTERS: Filters = {
    "verified": {"eq": True},
    "external": {"eq": False},
    "rentable": {"eq": True},
}


def build_query(
    query: str | Iterable[str] = "",
    *,
    defaults: Mapping[str, Mapping[str, Any]] = CLI_DEFAULT_FILTERS,
    order: str = "score-",
    type: str = "on-demand",
    limit: int | None = None,
    storage_gb: float = 5.0,
) -> dict[str, Any]:
    """The wire query for `POST /bundles/`, as `vastai search offers` builds it.

    With the default arguments the result equals what the official CLI sends for `query`.
    """
    wire: dict[str, Any] = dict(apply_terms(parse_terms(query), defaults))
    wire["order"] = parse_order(order)
    wire["type"] = offer_type(type)
    if limit is not None:
        if limit <= 0:
            raise QueryError(f"limit must be positive, got {limit}")
        wire["limit"] = int(limit)
    wire["allocated_storage"] = float(storage_gb)
    return wire
