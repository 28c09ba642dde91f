"""JavaScript value semantics the frontend's conversion relies on.

The API prompt is produced in a browser: numbers are IEEE doubles, object keys that look like
array indices come first in ascending order, `String(x)` formats numbers its own way, and
`Math.round` / `toFixed` round halves differently from Python. These helpers reproduce exactly
what matters for the conversion, so our output is byte-for-byte what the frontend would send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

_MAX_SAFE = 2**53
_MAX_INDEX = 2**32 - 1


class _Undefined:
    """JavaScript `undefined`: a value that JSON.stringify drops from objects."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()


def is_nullish(value: Any) -> bool:
    """`value == null` in JavaScript: None (null) or undefined."""
    return value is None or value is UNDEFINED


def number_or(value: Any, fallback: float) -> float:
    """`value ?? fallback` for numeric options (a non-number option counts as absent)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return fallback
    return value


def truthy(value: Any) -> bool:
    """JavaScript truthiness (NaN, 0, "" and null-ish are false; [] and {} are true)."""
    if is_nullish(value) or value is False:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def number_to_string(value: float) -> str:
    """`String(number)`: shortest round-trip digits, exponent only below 1e-6 or from 1e21."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if isinstance(value, int) and abs(value) < 10**21:
        return str(value)
    sign = "-" if value < 0 else ""
    digits, exponent = _shortest_digits(abs(float(value)))
    # `exponent` is the position of the decimal point relative to the digit string.
    n = exponent
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exp = n - 1
    exp_text = f"e+{exp}" if exp >= 0 else f"e-{-exp}"
    if k == 1:
        return sign + digits + exp_text
    return sign + digits[0] + "." + digits[1:] + exp_text


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest digits that round-trip `value`, and the decimal exponent of the point."""
    text = repr(value)
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    if frac == "0":
        frac = ""
    digits = (whole + frac).lstrip("0")
    point = len(whole) + exp
    if not digits:
        return "0", 1
    point -= len(whole + frac) - len((whole + frac).lstrip("0"))
    return digits.rstrip("0") or "0", point


def to_js_string(value: Any) -> str:
    """`String(value)` for the JSON value types (and undefined)."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return number_to_string(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join("" if is_nullish(v) else to_js_string(v) for v in value)
    return "[object Object]"


def js_math_round(value: float) -> float:
    """`Math.round`: nearest integer, halves toward +Infinity."""
    if math.isnan(value) or math.isinf(value):
        return value
    floor = math.floor(value)
    return float(floor + 1) if value - floor >= 0.5 else float(floor)


def js_to_fixed_number(value: float, digits: int) -> float:
    """`Number(value.toFixed(digits))`: exact decimal expansion, halves away from zero."""
    if math.isnan(value) or math.isinf(value) or abs(value) >= 1e21:
        return value
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def js_number(value: int | float) -> int | float | None:
    """A JSON number as a JavaScript double prints it: integral values lose their `.0`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) <= _MAX_SAFE:
            return value
        value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None  # JSON.stringify writes NaN and Infinity as null
    if value.is_integer() and abs(value) < 1e21:
        digits, point = _shortest_digits(abs(value))
        magnitude = int(digits + "0" * (point - len(digits)))
        return -magnitude if value < 0 else magnitude
    return value


def is_array_index(key: str) -> bool:
    """True for keys JavaScript orders first: canonical integers below 2**32 - 1."""
    if not key or not key.isdigit() or (len(key) > 1 and key[0] == "0"):
        return False
    return int(key) < _MAX_INDEX


def js_object(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Reorder keys as a JavaScript object holds them: array indices ascending, then the rest."""
    indices = sorted((k for k in mapping if is_array_index(k)), key=int)
    others = [k for k in mapping if not is_array_index(k)]
    return {k: mapping[k] for k in indices + others}


def as_json_value(value: Any) -> Any:
    """What JSON.stringify then JSON.parse makes of a value (undefined members vanish)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return js_number(value)
    if value is UNDEFINED:
        return None
    if isinstance(value, list | tuple):
        return [None if v is UNDEFINED else as_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return js_object({str(k): as_json_value(v) for k, v in value.items() if v is not UNDEFINED})
    return to_js_string(value)
