"""One node's inputs checked the way ComfyUI 0.3.64's `execution.validate_inputs` checks them.

The checks walk up the links recursively and remember each node's result, exactly like the
server: the first error per input wins, a node whose upstream failed is invalid without
errors of its own, an exception in an upstream node is reported on that node as
`exception_during_inner_validation`. Values are converted in place (`"12"` -> 12 for INT,
`{"__value__": [...]}` unwrapped), as the server does to the prompt it then queues.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfyfleet.errors import ComfyfleetError
from comfyfleet.graph.crash import ValidationCrash, frame
from comfyfleet.graph.custom import CustomValidation
from comfyfleet.graph.prompt import is_link, types_match
from comfyfleet.models.nodes import InputSpec, NodeCatalog, NodeDef

#: (valid, errors, node id): what ComfyUI stores per validated node.
NodeResult = tuple[bool, list[dict[str, Any]], Any]

_CONVERSIONS: dict[str, type] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}

# Values ComfyUI gives to hidden inputs when it gathers a hook's arguments at validation time.
_HIDDEN_VALUES: dict[str, Any] = {
    "PROMPT": {},
    "DYNPROMPT": None,
    "EXTRA_PNGINFO": None,
    "AUTH_TOKEN_COMFY_ORG": None,
    "API_KEY_COMFY_ORG": None,
}


def error_entry(
    type_: str, message: str, details: str, extra_info: dict[str, Any]
) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info}


def type_info(spec: InputSpec) -> tuple[Any, Any]:
    """(input type, options) as ComfyUI's `get_input_info` returns them from the raw spec."""
    raw = spec.raw
    if isinstance(raw, list | tuple) and raw:
        return raw[0], raw[1] if len(raw) > 1 else {}
    return raw, {}


class NodeValidator:
    """Validates nodes of one prompt (mutated in place) and keeps ComfyUI's `validated` map."""

    def __init__(
        self,
        prompt: dict[str, Any],
        catalog: NodeCatalog,
        custom: Mapping[str, CustomValidation],
    ) -> None:
        self.prompt = prompt
        self.catalog = catalog
        self.custom = custom
        self.validated: dict[Any, NodeResult] = {}
        self._active: set[Any] = set()

    def validate(self, unique_id: Any) -> NodeResult:
        """The node's result; raises ValidationCrash when an exception escapes its checks."""
        if unique_id in self.validated:
            return self.validated[unique_id]
        if unique_id in self._active:
            # A cycle: ComfyUI recurses until Python's limit and fails the same way.
            raise ValidationCrash(
                RecursionError("maximum recursion depth exceeded"), [frame("recurse")]
            )
        self._active.add(unique_id)
        try:
            result = self._validate(unique_id)
        finally:
            self._active.discard(unique_id)
        self.validated[unique_id] = result
        return result

    def _validate(self, unique_id: Any) -> NodeResult:
        site = "inputs"
        try:
            node = self.prompt[unique_id]
            inputs = node["inputs"]
            definition = self.catalog[node["class_type"]]
            hook = self.custom.get(node["class_type"])
            errors: list[dict[str, Any]] = []
            valid = True
            received_types: dict[str, Any] = {}
            for spec in definition.visible_inputs():
                site = "present"
                if spec.name not in inputs:
                    if spec.section == "required":
                        errors.append(self._missing(spec.name))
                    continue
                site = "value"
                if isinstance(inputs[spec.name], list):
                    if not self._check_link(spec, inputs, hook, errors, received_types):
                        valid = False
                else:
                    self._check_value(spec, inputs, hook, errors)
            if hook is not None:
                self._run_hook(unique_id, definition, inputs, hook, received_types, errors)
        except (ValidationCrash, ComfyfleetError):
            # Crashes carry their own frames; a malformed catalog is our caller's problem.
            raise
        except Exception as exc:  # ComfyUI reports any exception here
            raise ValidationCrash(exc, [frame(site)]) from exc
        if errors or not valid:
            return False, errors, unique_id
        return True, [], unique_id

    @staticmethod
    def _missing(name: str) -> dict[str, Any]:
        return error_entry(
            "required_input_missing", "Required input is missing", name, {"input_name": name}
        )

    def _check_link(
        self,
        spec: InputSpec,
        inputs: Any,
        hook: CustomValidation | None,
        errors: list[dict[str, Any]],
        received_types: dict[str, Any],
    ) -> bool:
        """Check one linked input and validate its source; False when the source is invalid."""
        x = spec.name
        val = inputs[x]
        input_type, extra_info = type_info(spec)
        info = [input_type, extra_info]
        if len(val) != 2:
            errors.append(
                error_entry(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    x,
                    {"input_name": x, "input_config": info, "received_value": val},
                )
            )
            return True
        o_id = val[0]
        try:
            o_class_type = self.prompt[o_id]["class_type"]
        except Exception as exc:  # e.g. KeyError: a link to a missing node
            raise ValidationCrash(exc, [frame("link_node")]) from exc
        return_types = tuple(self.catalog[o_class_type].raw.get("output", ()))
        received_type = self._slot(return_types, val)
        received_types[x] = received_type
        takes_types = hook is not None and "input_types" in hook.inputs
        if not takes_types and not types_match(received_type, input_type):
            errors.append(
                error_entry(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    f"{x}, received_type({received_type}) mismatch input_type({input_type})",
                    {
                        "input_name": x,
                        "input_config": info,
                        "received_type": received_type,
                        "linked_node": val,
                    },
                )
            )
            return True
        try:
            upstream = self.validate(o_id)
        except ValidationCrash as crash:
            self.validated[o_id] = (
                False,
                [
                    error_entry(
                        "exception_during_inner_validation",
                        "Exception when validating inner node",
                        crash.message,
                        {
                            "input_name": x,
                            "input_config": info,
                            "exception_message": crash.message,
                            "exception_type": crash.exception_type,
                            "traceback": crash.traceback("recurse"),
                            "linked_node": val,
                        },
                    )
                ],
                o_id,
            )
            return False
        return upstream[0] is not False

    @staticmethod
    def _slot(return_types: tuple[Any, ...], link: list[Any]) -> Any:
        try:
            return return_types[link[1]]
        except Exception as exc:  # reported with the slot lookup's site
            raise ValidationCrash(exc, [frame("link_slot")]) from exc

    def _check_value(
        self,
        spec: InputSpec,
        inputs: Any,
        hook: CustomValidation | None,
        errors: list[dict[str, Any]],
    ) -> None:
        """Unwrap, convert and range-check one constant input, as ComfyUI does."""
        x = spec.name
        val = inputs[x]
        input_type, extra_info = type_info(spec)
        info = [input_type, extra_info]
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = val["__value__"]
                inputs[x] = val
            convert = _CONVERSIONS.get(input_type) if isinstance(input_type, str) else None
            if convert is not None:
                val = convert(val)
                inputs[x] = val
        except Exception as ex:  # noqa: BLE001 - any conversion failure is invalid_input_type
            errors.append(
                error_entry(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {input_type} value",
                    f"{x}, {val}, {ex}",
                    {
                        "input_name": x,
                        "input_config": info,
                        "received_value": val,
                        "exception_message": str(ex),
                    },
                )
            )
            return
        if hook is not None and (hook.all_inputs or x in hook.inputs):
            return
        extra = {"input_name": x, "input_config": info, "received_value": val}
        if "min" in extra_info and self._compare("min", val, extra_info["min"]):
            message = "Value {} smaller than min of {}".format(val, extra_info["min"])
            errors.append(error_entry("value_smaller_than_min", message, x, extra))
            return
        if "max" in extra_info and self._compare("max", val, extra_info["max"]):
            message = "Value {} bigger than max of {}".format(val, extra_info["max"])
            errors.append(error_entry("value_bigger_than_max", message, x, extra))
            return
        if isinstance(input_type, list) and val not in input_type:
            if len(input_type) > 20:
                list_info, config = f"(list of length {len(input_type)})", None
            else:
                list_info, config = str(input_type), info
            errors.append(
                error_entry(
                    "value_not_in_list",
                    "Value not in list",
                    f"{x}: '{val}' not in {list_info}",
                    {"input_name": x, "input_config": config, "received_value": val},
                )
            )

    @staticmethod
    def _compare(site: str, val: Any, bound: Any) -> bool:
        try:
            return bool(val < bound) if site == "min" else bool(val > bound)
        except Exception as exc:  # e.g. '<' between str and int
            raise ValidationCrash(exc, [frame(site)]) from exc

    def _run_hook(
        self,
        unique_id: Any,
        definition: NodeDef,
        inputs: Any,
        hook: CustomValidation,
        received_types: dict[str, Any],
        errors: list[dict[str, Any]],
    ) -> None:
        """Call the node's hook with the inputs it takes; a refusal fails each of them."""
        gathered: dict[str, Any] = {}
        for name, value in inputs.items():
            spec = definition.inputs.get(name)
            if is_link(value) and not (spec is not None and spec.options.get("rawLink")):
                gathered[name] = None  # linked values do not exist yet at validation time
            elif spec is not None:
                gathered[name] = value
        for spec in definition.section("hidden"):
            if spec.type == "UNIQUE_ID":
                gathered[spec.name] = unique_id
            elif spec.type in _HIDDEN_VALUES:
                gathered[spec.name] = _HIDDEN_VALUES[spec.type]
        taken = {k: v for k, v in gathered.items() if hook.all_inputs or k in hook.inputs}
        if "input_types" in hook.inputs:
            taken["input_types"] = received_types
        try:
            result = hook.check(taken)
        except Exception as exc:  # the server reports whatever the hook raised
            mapped = frame("map_each") if taken else frame("map_empty")
            raise ValidationCrash(exc, [frame("hook"), mapped, frame("call")]) from exc
        if result is True:
            return
        for name in taken:
            details = name if result is False else f"{name} - {result}"
            errors.append(
                error_entry(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    details,
                    {"input_name": name},
                )
            )
