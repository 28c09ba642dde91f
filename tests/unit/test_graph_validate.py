"""graph.validate_prompt: ComfyUI 0.3.64's validation rules, case by case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from comfyfleet.graph.custom import CustomValidation, stock_validations
from comfyfleet.graph.validate import PromptValidation, validate_prompt
from comfyfleet.models.nodes import NodeCatalog


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def _node(
    inputs: dict[str, Any], output: list[Any], *, output_node: bool = False
) -> dict[str, Any]:
    return {
        "input": {"required": inputs},
        "input_order": {"required": list(inputs)},
        "output": output,
        "output_node": output_node,
    }


@pytest.fixture(scope="module")
def toy() -> NodeCatalog:
    """Node shapes the stock catalog lacks: V3 combos, comma types, typed sinks."""
    return NodeCatalog(
        {
            "Source": _node({}, ["IMAGE", "INT,FLOAT", ["a", "b"]]),
            "Number": _node({"value": ["INT,FLOAT", {"min": 0}]}, ["FLOAT"]),
            "V3Pick": _node({"choice": ["COMBO", {"options": ["x", "y"]}]}, ["STRING"]),
            "Sink": _node({"any": ["*", {}]}, [], output_node=True),
            "FloatSink": _node({"value": ["FLOAT,INT"]}, [], output_node=True),
            "ImageSink": _node({"image": ["IMAGE"]}, [], output_node=True),
            "Checked": _node(
                {"a": ["INT", {"min": 5}], "b": ["STRING", {}], "img": ["IMAGE"]},
                [],
                output_node=True,
            ),
        }
    )


def _errors(result: PromptValidation, node_id: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = result.node_errors[node_id]["errors"]
    return errors


def _image_with(width: Any) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": width, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


@pytest.mark.parametrize(
    ("value", "queued"),
    [("12", 12), (12.7, 12), (True, 1), ({"__value__": 64}, 64), (16384, 16384)],
)
def test_int_inputs_convert_like_python(catalog: NodeCatalog, value: Any, queued: int) -> None:
    result = validate_prompt(_image_with(value), catalog)
    assert result.ok, result.node_errors
    assert result.prompt["1"]["inputs"]["width"] == queued


@pytest.mark.parametrize(
    ("value", "python_error"),
    [
        ("12.5", "invalid literal for int() with base 10: '12.5'"),
        (
            None,
            "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'",
        ),
        (
            {"a": 1},
            "int() argument must be a string, a bytes-like object or a real number, not 'dict'",
        ),
        ({"__value__": "x"}, "invalid literal for int() with base 10: 'x'"),
    ],
)
def test_int_conversion_failures_quote_python(
    catalog: NodeCatalog, value: Any, python_error: str
) -> None:
    result = validate_prompt(_image_with(value), catalog)
    assert not result.ok
    (err,) = _errors(result, "1")
    shown = value["__value__"] if isinstance(value, dict) and "__value__" in value else value
    assert err["type"] == "invalid_input_type"
    assert err["message"] == "Failed to convert an input value to a INT value"
    assert err["details"] == f"width, {shown}, {python_error}"
    assert err["extra_info"]["exception_message"] == python_error
    assert err["extra_info"]["received_value"] == shown


@pytest.mark.parametrize(
    ("value", "type_", "message"),
    [
        (0, "value_smaller_than_min", "Value 0 smaller than min of 1"),
        ("0", "value_smaller_than_min", "Value 0 smaller than min of 1"),
        (16385, "value_bigger_than_max", "Value 16385 bigger than max of 16384"),
    ],
)
def test_limits_apply_after_conversion(
    catalog: NodeCatalog, value: Any, type_: str, message: str
) -> None:
    (err,) = _errors(validate_prompt(_image_with(value), catalog), "1")
    assert (err["type"], err["message"], err["details"]) == (type_, message, "width")
    assert err["extra_info"]["received_value"] == int(value)


def test_float_string_and_boolean_conversions(catalog: NodeCatalog) -> None:
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": "abc"},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": 5}},
        "4": {"class_type": "PrimitiveBoolean", "inputs": {"value": "false"}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }
    result = validate_prompt(prompt, catalog)
    assert result.ok  # output 5 validates; output 3 fails on its upstream ImageBlur
    assert result.outputs == ["5"]
    (err,) = _errors(result, "2")
    assert err["details"] == "sigma, abc, could not convert string to float: 'abc'"
    assert result.node_errors["2"]["dependent_outputs"] == ["3"]
    assert result.prompt["3"]["inputs"]["filename_prefix"] == "5"
    # bool("false") is True in Python, and ComfyUI converts with bool().
    assert result.prompt["4"]["inputs"]["value"] is True


def test_long_option_lists_are_summarised(catalog: NodeCatalog) -> None:
    choices = catalog["KSampler"].inputs["sampler_name"].choices
    assert choices is not None and len(choices) > 20
    prompt = {
        "1": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "nope"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    (err,) = _errors(validate_prompt(prompt, catalog), "1")
    assert err["details"] == f"sampler_name: 'nope' not in (list of length {len(choices)})"
    assert err["extra_info"]["input_config"] is None


def test_v3_combos_are_not_checked_against_their_options(toy: NodeCatalog) -> None:
    prompt = {
        "1": {"class_type": "V3Pick", "inputs": {"choice": "zzz"}},
        "2": {"class_type": "Sink", "inputs": {"any": ["1", 0]}},
    }
    assert validate_prompt(prompt, toy).ok


@pytest.mark.parametrize(
    ("sink", "slot", "ok"),
    [
        ("Sink", 0, True),  # "*" accepts anything
        ("Sink", 2, True),  # even a combo-list output
        ("FloatSink", 1, True),  # "INT,FLOAT" shares a member with "FLOAT,INT"
        ("ImageSink", 1, False),
        ("ImageSink", 2, False),  # a list type never equals a name
    ],
)
def test_link_types(toy: NodeCatalog, sink: str, slot: int, ok: bool) -> None:
    name = {"Sink": "any", "FloatSink": "value", "ImageSink": "image"}[sink]
    prompt = {
        "1": {"class_type": "Source", "inputs": {}},
        "2": {"class_type": sink, "inputs": {name: ["1", slot]}},
    }
    result = validate_prompt(prompt, toy)
    assert result.ok is ok
    if not ok:
        (err,) = _errors(result, "2")
        assert err["type"] == "return_type_mismatch"
        received = ["IMAGE", "INT,FLOAT", ["a", "b"]][slot]
        assert err["details"] == f"image, received_type({received}) mismatch input_type(IMAGE)"


def test_comparison_errors_surface_as_exceptions(toy: NodeCatalog) -> None:
    # No conversion for a comma type, so the min check compares str with int and raises.
    direct = {"1": {"class_type": "FloatSink", "inputs": {"value": "abc"}}}
    assert validate_prompt(direct, toy).ok  # FloatSink has no min
    prompt = {
        "1": {"class_type": "Number", "inputs": {"value": "abc"}},
        "2": {"class_type": "Sink", "inputs": {"any": ["1", 0]}},
    }
    result = validate_prompt(prompt, toy)
    assert not result.ok
    (err,) = _errors(result, "1")  # reported on the node that raised, via its consumer
    assert err["type"] == "exception_during_inner_validation"
    assert err["details"] == "'<' not supported between instances of 'str' and 'int'"
    extra = err["extra_info"]
    assert extra["exception_type"] == "TypeError"
    assert (extra["input_name"], extra["linked_node"]) == ("any", ["1", 0])
    assert len(extra["traceback"]) == 2 and "validate_inputs" in extra["traceback"][0]
    assert result.error is not None and result.error["details"] == ""


def test_node_without_inputs_key_raises_key_error(catalog: NodeCatalog) -> None:
    result = validate_prompt({"1": {"class_type": "PreviewImage"}}, catalog)
    (err,) = _errors(result, "1")
    assert (err["type"], err["details"]) == ("exception_during_validation", "'inputs'")
    assert result.error is not None
    assert result.error["details"] == "Exception when validating node: 'inputs'"


def test_cycles_fail_without_node_errors(catalog: NodeCatalog) -> None:
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    result = validate_prompt(prompt, catalog)
    assert not result.ok
    assert result.node_errors == {}
    assert result.error is not None and result.error["type"] == "prompt_outputs_failed_validation"


def test_dependent_outputs_accumulate_like_comfyui(catalog: NodeCatalog) -> None:
    bad = {
        "class_type": "EmptyImage",
        "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0},
    }
    prompt = {
        "1": bad,
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    result = validate_prompt(prompt, catalog)
    assert list(result.node_errors) == ["1"]
    assert result.node_errors["1"]["dependent_outputs"] == ["2", "4"]
    assert result.node_errors["1"]["class_type"] == "EmptyImage"


def test_partial_targets_skip_other_outputs(catalog: NodeCatalog) -> None:
    prompt = _image_with(0)
    prompt["3"] = {"class_type": "PreviewAny", "inputs": {"source": "hello"}}
    everything = validate_prompt(prompt, catalog)
    assert everything.ok and everything.outputs == ["3"]  # accepted, output 2 dropped
    assert everything.node_errors["1"]["dependent_outputs"] == ["2"]
    only = validate_prompt(prompt, catalog, partial_targets=["3"])
    assert only.ok and only.outputs == ["3"] and only.node_errors == {}


@pytest.mark.parametrize(
    ("prompt", "message", "node"),
    [
        (
            {"7": {"class_type": "Nope", "inputs": {}}, "8": {"inputs": {}}},
            "Cannot execute because node Nope does not exist.",
            "7",
        ),
        (
            {"8": {"inputs": {}}, "7": {"class_type": "Nope", "inputs": {}}},
            "Cannot execute because a node is missing the class_type property.",
            "8",
        ),
        (
            {"5": "not a node"},
            "Cannot execute because a node is missing the class_type property.",
            "5",
        ),
    ],
)
def test_first_bad_node_stops_the_check(
    catalog: NodeCatalog, prompt: dict[str, Any], message: str, node: str
) -> None:
    result = validate_prompt(prompt, catalog)
    assert result.error == {
        "type": "invalid_prompt",
        "message": message,
        "details": f"Node ID '#{node}'",
        "extra_info": {},
    }
    assert result.node_errors == {}


def test_non_object_prompt_is_a_server_crash(catalog: NodeCatalog) -> None:
    with pytest.raises(TypeError):
        validate_prompt([1, 2], catalog)  # type: ignore[arg-type]


def test_unknown_and_hidden_inputs_are_ignored(catalog: NodeCatalog) -> None:
    prompt = _image_with(8)
    prompt["2"]["inputs"].update({"bogus": ["99", 0], "prompt": "x"})
    assert validate_prompt(prompt, catalog).ok


def _hooked(check: Any, *inputs: str, all_inputs: bool = False) -> Mapping[str, CustomValidation]:
    return {"Checked": CustomValidation(inputs, check, all_inputs)}


def test_hook_inputs_skip_builtin_checks_and_get_link_values_as_none(toy: NodeCatalog) -> None:
    seen: list[Mapping[str, Any]] = []

    def check(values: Mapping[str, Any]) -> bool:
        seen.append(dict(values))
        return True

    prompt = {
        "1": {"class_type": "Source", "inputs": {}},
        "2": {"class_type": "Checked", "inputs": {"a": "1", "b": 3, "img": ["1", 0]}},
    }
    result = validate_prompt(prompt, toy, custom=_hooked(check, "a", "img"))
    assert result.ok  # a=1 is below min 5, but `a` belongs to the hook
    assert seen == [{"a": 1, "img": None}]


@pytest.mark.parametrize(
    ("answer", "details"),
    [(False, ["a", "b"]), ("too small", ["a - too small", "b - too small"])],
)
def test_hook_refusal_fails_every_input_it_took(
    toy: NodeCatalog, answer: bool | str, details: list[str]
) -> None:
    prompt = {"1": {"class_type": "Checked", "inputs": {"a": 9, "b": "x", "img": "i"}}}
    result = validate_prompt(prompt, toy, custom=_hooked(lambda _v: answer, "a", "b"))
    errors = _errors(result, "1")
    assert [e["details"] for e in errors] == details
    assert {e["type"] for e in errors} == {"custom_validation_failed"}
    assert [e["extra_info"] for e in errors] == [{"input_name": "a"}, {"input_name": "b"}]


def test_kwargs_hook_takes_every_input(toy: NodeCatalog) -> None:
    prompt = {"1": {"class_type": "Checked", "inputs": {"a": 1, "b": "x", "img": "i"}}}
    result = validate_prompt(prompt, toy, custom=_hooked(lambda _v: True, all_inputs=True))
    assert result.ok  # min of `a` skipped


def test_input_types_hook_replaces_link_type_checks(toy: NodeCatalog) -> None:
    seen: list[Any] = []

    def check(values: Mapping[str, Any]) -> bool:
        seen.append(values["input_types"])
        return True

    prompt = {
        "1": {"class_type": "Source", "inputs": {}},
        "2": {"class_type": "Checked", "inputs": {"a": 9, "b": "x", "img": ["1", 1]}},
    }
    assert validate_prompt(prompt, toy, custom=_hooked(check, "input_types")).ok
    assert seen == [{"img": "INT,FLOAT"}]


def test_hook_exceptions_are_reported(toy: NodeCatalog) -> None:
    def check(_values: Mapping[str, Any]) -> bool:
        raise ValueError("boom")

    prompt = {"1": {"class_type": "Checked", "inputs": {"a": 9, "b": "x", "img": "i"}}}
    (err,) = _errors(validate_prompt(prompt, toy, custom=_hooked(check, "a")), "1")
    assert (err["type"], err["details"]) == ("exception_during_validation", "boom")
    assert err["extra_info"]["exception_type"] == "ValueError"
    assert len(err["extra_info"]["traceback"]) == 4


def test_load_image_without_image_loses_its_own_error(catalog: NodeCatalog) -> None:
    # LoadImage.VALIDATE_INPUTS() is called without its argument: the TypeError replaces the
    # required_input_missing error in the node's entry.
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    result = validate_prompt(prompt, catalog, custom=stock_validations(lambda _n: True))
    (err,) = _errors(result, "1")
    assert err["type"] == "exception_during_inner_validation"
    assert (
        err["details"]
        == "LoadImage.VALIDATE_INPUTS() missing 1 required positional argument: 'image'"
    )
    assert err["extra_info"]["input_name"] == "images"


def test_load_image_names_are_checked_only_by_the_hook(catalog: NodeCatalog) -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mine.png [output]"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    assert validate_prompt(prompt, catalog).ok  # default hooks: no file check, no list check
    seen: list[str] = []
    hooks = stock_validations(lambda name: bool(seen.append(name)))
    (err,) = _errors(validate_prompt(prompt, catalog, custom=hooks), "1")
    assert err["details"] == "image - Invalid image file: mine.png [output]"
    assert seen == ["mine.png [output]"]
