"""JavaScript value semantics and editor text rules used by the conversion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import pytest

from comfyfleet.comfy.workflow.convert_js import (
    UNDEFINED,
    as_json_value,
    js_math_round,
    js_number,
    js_object,
    js_to_fixed_number,
    number_to_string,
    to_js_string,
)
from comfyfleet.comfy.workflow.convert_text import format_date, process_dynamic_prompt


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "5"),
        (5.0, "5"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (3.1000000000000005, "3.1000000000000005"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1e16, "10000000000000000"),
        (1.5e21, "1.5e+21"),
        (123456789012345680000.0, "123456789012345680000"),
        (math.inf, "Infinity"),
        (math.nan, "NaN"),
    ],
)
def test_numbers_print_like_javascript_string(value: float, text: str) -> None:
    assert number_to_string(value) == text


def test_js_string_of_other_values() -> None:
    assert [to_js_string(v) for v in (None, True, UNDEFINED, [1, None, "a"], {"a": 1})] == [
        "null",
        "true",
        "undefined",
        "1,,a",
        "[object Object]",
    ]


def test_numbers_become_doubles() -> None:
    assert js_number(1.0) == 1 and isinstance(js_number(1.0), int)
    assert js_number(18446744073709551615) == 18446744073709552000
    assert js_number(math.nan) is None
    assert js_number(2.5) == 2.5


def test_rounding_follows_math_round_and_to_fixed() -> None:
    assert [js_math_round(v) for v in (2.5, -2.5, 0.49999999999999994, -0.5)] == [3, -2, 0, -0.0]
    assert js_to_fixed_number(1.005, 2) == 1.0  # 1.005 is 1.00499999… in binary
    assert js_to_fixed_number(0.5, 0) == 1 and js_to_fixed_number(-0.5, 0) == -1


def test_object_keys_order_like_javascript() -> None:
    ordered = js_object({"b": 1, "10": 2, "2": 3, "01": 4, "4294967295": 5, "3:1": 6})
    assert list(ordered) == ["2", "10", "b", "01", "4294967295", "3:1"]
    assert as_json_value({"x": UNDEFINED, "y": [UNDEFINED, 2.0]}) == {"y": [None, 2]}


def test_dynamic_prompt_rules() -> None:
    def first(options: Sequence[str]) -> str:
        return options[0]

    def last(options: Sequence[str]) -> str:
        return options[-1]

    text = "a {b|{c|d}} e // gone\n/* gone\n */f \\{g\\|h\\} {|x}"
    assert process_dynamic_prompt(text, first) == "a b e \nf {g|h} "
    assert process_dynamic_prompt(text, last) == "a d e \nf {g|h} x"


def test_date_patterns() -> None:
    now = datetime(2024, 1, 2, 3, 4, 5)
    assert (
        format_date("yyyy-MM-dd hh:mm:ss yy M d y yyy", now) == "2024-01-02 03:04:05 24 1 2 y yyy"
    )
