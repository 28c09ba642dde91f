"""Vast's wire query language: `{"field": {"op": value}}` filters, ordering and paging.

Operators eq/neq/gt/gte/lt/lte/in/notin. Values may be numbers or numeric strings (the CLI
sends `{"num_gpus": {"gte": "1"}}`), booleans or "true"/"false", lists for in/notin. Offer
searches also know the virtual fields of reference §3.1: verified, datacenter, duration,
geolocation (a country code or the full "Region, CC"), driver_version (compared numerically),
reliability (= reliability2), dphtotal, ubuntu_version, and `*_GB` RAM fields (x1000). An
unknown field or operator is refused with 400 `invalid_request` naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from comfyfleet.sandbox.vast import catalog
from comfyfleet.sandbox.vast.errors import ApiError

OPERATORS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in", "notin"})
#: Keys of the search body that are not filters.
SEARCH_CONTROL_KEYS = frozenset(
    {"order", "type", "limit", "allocated_storage", "disable_bundling", "target_reliability"}
)
OFFER_TYPES = {"on-demand": "on-demand", "ondemand": "on-demand", "bid": "bid"}
OFFER_TYPES |= {"interruptible": "bid", "reserved": "reserved"}
_ALIASES = {
    "reliability": "reliability2",
    "dphtotal": "dph_total",
    "ubuntu_version": "os_version",
    "cuda_vers": "cuda_max_good",
}
_RAM_FIELDS = ("cpu_ram", "gpu_ram", "gpu_total_ram")

Getter = Callable[[dict[str, Any]], Any]


def _bad(msg: str) -> ApiError:
    return ApiError(400, "invalid_request", msg)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    return None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _coerce(actual: Any, expected: Any, field: str) -> Any:
    """`expected` in the type of `actual` (so "1" compares with 1); 400 when impossible."""
    if expected is None or actual is None:
        return expected
    if isinstance(actual, bool):
        flag = _as_bool(expected)
        if flag is None:
            raise _bad(f"{field}: expected a boolean, got {expected!r}")
        return flag
    if isinstance(actual, int | float):
        number = _as_number(expected)
        if number is None:
            raise _bad(f"{field}: expected a number, got {expected!r}")
        return number
    return str(expected)


def _compare(actual: Any, op: str, expected: Any, field: str) -> bool:
    if op in ("in", "notin"):
        items = expected if isinstance(expected, list) else [expected]
        hit = any(_compare(actual, "eq", item, field) for item in items)
        return hit if op == "in" else not hit
    value = _coerce(actual, expected, field)
    if op == "eq":
        return bool(actual == value)
    if op == "neq":
        return bool(actual != value)
    if actual is None or value is None:
        return False
    try:
        if op == "gt":
            return bool(actual > value)
        if op == "gte":
            return bool(actual >= value)
        if op == "lt":
            return bool(actual < value)
        return bool(actual <= value)
    except TypeError as exc:
        raise _bad(f"{field}: cannot compare {actual!r} with {expected!r}") from exc


def _ops(field: str, spec: Any) -> list[tuple[str, Any]]:
    if not isinstance(spec, dict):
        raise _bad(f"filter for {field} must be an object of operators, got {spec!r}")
    bad = [op for op in spec if op not in OPERATORS]
    if bad:
        raise _bad(f"unknown operator {bad[0]!r} for {field}; valid: {sorted(OPERATORS)}")
    return list(spec.items())


# --- offers --------------------------------------------------------------------------------


def _geo_match(offer: dict[str, Any], op: str, expected: Any) -> bool:
    place = str(offer.get("geolocation") or "")
    code = catalog.country_code(place).upper()

    def one(v: Any) -> bool:
        text = str(v).strip()
        return text.upper() == code or text == place

    items = expected if isinstance(expected, list) else [expected]
    hit = any(one(v) for v in items)
    return not hit if op in ("neq", "notin") else hit


def _offer_getter(field: str, known: Iterable[str]) -> tuple[Getter, float]:
    """How to read `field` from an offer row, and the factor to apply to the query value."""
    if field.endswith("_GB") and field[:-3] in _RAM_FIELDS:
        return _offer_getter(field[:-3], known)[0], 1000.0
    if field in _ALIASES:
        field = _ALIASES[field]
    if field == "verified":
        return (lambda o: o.get("verification") == "verified"), 1.0
    if field == "datacenter":
        return (lambda o: o.get("hosting_type") == 1), 1.0
    if field == "driver_version":
        return (lambda o: o.get("driver_vers")), 1.0
    if field in known:
        name = field
        return (lambda o: o.get(name)), 1.0
    raise _bad(f"unknown field {field!r}; valid fields: {', '.join(sorted(known))}")


def _driver_value(value: Any) -> Any:
    if isinstance(value, str) and value.count(".") == 2:
        return catalog.numeric_driver(value)
    if isinstance(value, list):
        return [_driver_value(v) for v in value]
    return value


def _scale(value: Any, factor: float) -> Any:
    if factor == 1.0:
        return value
    if isinstance(value, list):
        return [_scale(v, factor) for v in value]
    number = _as_number(value)
    return value if number is None else number * factor


def offer_matcher(query: dict[str, Any], known: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate for offer rows from a search body's filter entries (400 on bad ones)."""
    known = set(known)
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for field, spec in query.items():
        if field in SEARCH_CONTROL_KEYS:
            continue
        for op, value in _ops(field, spec):
            if field == "geolocation":
                checks.append(functools.partial(_geo_check, op=op, value=value))
                continue
            getter, factor = _offer_getter(field, known)
            if field == "driver_version":
                value = _driver_value(value)
            checks.append(
                functools.partial(
                    _field_check, getter=getter, op=op, value=_scale(value, factor), field=field
                )
            )
    storage = query.get("allocated_storage")
    if storage is not None:
        need = _as_number(storage)
        if need is None:
            raise _bad(f"allocated_storage must be a number, got {storage!r}")
        checks.append(lambda o: float(o.get("disk_space") or 0) >= need)
    return lambda offer: all(check(offer) for check in checks)


def _geo_check(offer: dict[str, Any], *, op: str, value: Any) -> bool:
    return _geo_match(offer, op, value)


def _field_check(offer: dict[str, Any], *, getter: Getter, op: str, value: Any, field: str) -> bool:
    return _compare(getter(offer), op, value, field)


def offer_order(order: Any, known: Iterable[str]) -> list[tuple[str, bool]]:
    """[(field, descending)] from `[["score", "desc"], ...]`; default score descending."""
    if order is None:
        return [("score", True)]
    if not isinstance(order, list):
        raise _bad(f"order must be a list of [field, direction], got {order!r}")
    known = set(known)
    out: list[tuple[str, bool]] = []
    for entry in order:
        if isinstance(entry, str):
            entry = [entry, "asc"]
        if not isinstance(entry, list | tuple) or not entry:
            raise _bad(f"bad order entry {entry!r}")
        field = _ALIASES.get(str(entry[0]), str(entry[0]))
        direction = str(entry[1]).lower() if len(entry) > 1 else "asc"
        if field not in known:
            raise _bad(f"cannot order by unknown field {field!r}")
        if direction not in ("asc", "desc"):
            raise _bad(f"order direction must be asc or desc, got {direction!r}")
        out.append((field, direction == "desc"))
    return out


# --- ordering and instance filters --------------------------------------------------------


def _cmp_values(a: Any, b: Any) -> int:
    if a == b:
        return 0
    if a is None:  # None sorts last in either direction handled by the caller
        return 1
    if b is None:
        return -1
    try:
        return -1 if a < b else 1
    except TypeError:
        return -1 if str(a) < str(b) else 1


def row_comparator(keys: Sequence[tuple[str, bool]]) -> Callable[[Any, Any], int]:
    """A cmp function over rows (dicts) or key lists, honouring per-key direction."""

    def values(row: Any) -> list[Any]:
        return [row.get(k) for k, _ in keys] if isinstance(row, dict) else list(row)

    def cmp(a: Any, b: Any) -> int:
        for (va, vb), (_, desc) in zip(zip(values(a), values(b), strict=True), keys, strict=True):
            if va is None or vb is None:
                result = _cmp_values(va, vb)
            else:
                result = _cmp_values(va, vb) * (-1 if desc else 1)
            if result:
                return result
        return 0

    return cmp


def sort_rows(rows: list[dict[str, Any]], keys: Sequence[tuple[str, bool]]) -> list[dict[str, Any]]:
    return sorted(rows, key=functools.cmp_to_key(row_comparator(keys)))


def row_matcher(filters: Any, allowed: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate for `select_filters` over rendered rows; only `allowed` columns (400 else)."""
    if filters in (None, ""):
        filters = {}
    if not isinstance(filters, dict):
        raise _bad(f"select_filters must be an object, got {filters!r}")
    allowed = set(allowed)
    checks: list[tuple[str, str, Any]] = []
    for field, spec in filters.items():
        if field not in allowed:
            raise _bad(
                f"cannot filter on {field!r}; filterable columns: {', '.join(sorted(allowed))}"
            )
        checks.extend((field, op, value) for op, value in _ops(field, spec))
    return lambda row: all(_compare(row.get(f), op, v, f) for f, op, v in checks)
