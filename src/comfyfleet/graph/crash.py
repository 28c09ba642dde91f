"""Exceptions raised while validating, reported the way ComfyUI reports them.

ComfyUI catches any exception its validator raises and returns it as an error entry with
the exception's type, text and `traceback.format_tb` lines. The checks here run the same
Python operations, so type and text match; the traceback is rebuilt from the ComfyUI source
lines where the operation sits (ComfyUI 0.3.64 `execution.py`).
"""

from __future__ import annotations

from typing import Final

#: Where tracebacks say ComfyUI lives (the layout of Vast's ComfyUI image).
COMFYUI_ROOT: Final = "/workspace/ComfyUI"

# Sites in ComfyUI's execution.py: name -> (line, function, source line).
_SITES: Final[dict[str, tuple[int, str, str]]] = {
    "prompt": (
        1010,
        "validate_prompt",
        "m = await validate_inputs(prompt_id, prompt, o, validated)",
    ),
    "inputs": (730, "validate_inputs", "inputs = prompt[unique_id]['inputs']"),
    "present": (757, "validate_inputs", "if x not in inputs:"),
    "value": (770, "validate_inputs", "val = inputs[x]"),
    "link_node": (788, "validate_inputs", "o_class_type = prompt[o_id]['class_type']"),
    "link_slot": (790, "validate_inputs", "received_type = r[val[1]]"),
    "recurse": (
        808,
        "validate_inputs",
        "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
    ),
    "min": (869, "validate_inputs", 'if "min" in extra_info and val < extra_info["min"]:'),
    "max": (882, "validate_inputs", 'if "max" in extra_info and val > extra_info["max"]:'),
    "combo": (898, "validate_inputs", "if val not in combo_options:"),
    "hook": (
        932,
        "validate_inputs",
        "ret = await _async_map_node_over_list(prompt_id, unique_id, obj_class, input_filtered, "
        "validate_function_name, hidden_inputs=hidden_inputs)",
    ),
    "map_empty": (285, "_async_map_node_over_list", "await process_inputs({})"),
    "map_each": (289, "_async_map_node_over_list", "await process_inputs(input_dict, i)"),
    "call": (277, "process_inputs", "result = f(**inputs)"),
}


def frame(site: str) -> str:
    """One `traceback.format_tb` entry for a site of ComfyUI's validator."""
    line, func, source = _SITES[site]
    return f'  File "{COMFYUI_ROOT}/execution.py", line {line}, in {func}\n    {source}\n'


def full_type_name(exc_type: type[BaseException]) -> str:
    """`KeyError` for builtins, `module.Qualname` otherwise (ComfyUI's `full_type_name`)."""
    if exc_type.__module__ == "builtins":
        return exc_type.__qualname__
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


class ValidationCrash(Exception):
    """An exception raised inside a node's validation, with the frames it went through."""

    def __init__(self, original: Exception, frames: list[str]) -> None:
        super().__init__(str(original))
        self.original = original
        self.frames = frames

    @property
    def exception_type(self) -> str:
        return full_type_name(type(self.original))

    @property
    def message(self) -> str:
        return str(self.original)

    def traceback(self, caller_site: str) -> list[str]:
        """The frames as seen from the catching call: its own line, then the failing ones."""
        return [frame(caller_site), *self.frames]
