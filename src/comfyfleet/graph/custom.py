"""Node-specific input checks: ComfyUI's `VALIDATE_INPUTS` / V3 `validate_inputs` hooks.

A node with such a hook changes validation in two ways: the inputs the hook takes skip
ComfyUI's own min/max/list checks, and the hook's answer (True or an error text) becomes a
`custom_validation_failed` error. Object_info does not show which nodes have hooks, so the
stock ones of ComfyUI 0.3.64 are listed here; callers add their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CustomValidator = Callable[[Mapping[str, Any]], bool | str]
"""Receives {input_name: value} for the inputs the hook takes; returns True or an error text.

It may raise: ComfyUI reports that as an exception while validating (a missing argument is a
TypeError, exactly as calling the Python hook without it would be).
"""

#: `exists(annotated_name)`: does the file a Load* node names exist on the server?
FileExists = Callable[[str], bool]


@dataclass(frozen=True)
class CustomValidation:
    """A node's validation hook: the inputs it takes and the check itself."""

    inputs: tuple[str, ...]  # the inputs the hook takes (these skip type/list checks)
    check: CustomValidator  # receives {input_name: value} for those inputs
    all_inputs: bool = False  # the hook takes **kwargs: every input skips the checks


def split_annotation(name: str) -> tuple[str, str | None]:
    """`"x.png [output]"` -> `("x.png", "output")`; no annotation -> `(name, None)` (input).

    Same slicing as ComfyUI's `folder_paths.annotated_filepath`, which strips a fixed number
    of characters after matching the bracketed suffix.
    """
    for folder in ("output", "input", "temp"):
        if name.endswith(f"[{folder}]"):
            return name[: -(len(folder) + 3)], folder
    return name, None


def missing_arguments_error(qualname: str, missing: list[str]) -> TypeError:
    """The TypeError Python raises when a function is called without required arguments."""
    quoted = [f"'{m}'" for m in missing]
    if len(quoted) == 1:
        names = quoted[0]
    elif len(quoted) == 2:
        names = f"{quoted[0]} and {quoted[1]}"
    else:
        names = ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    plural = "argument" if len(missing) == 1 else "arguments"
    return TypeError(f"{qualname}() missing {len(missing)} required positional {plural}: {names}")


def _require(qualname: str, names: tuple[str, ...], values: Mapping[str, Any]) -> list[Any]:
    missing = [n for n in names if n not in values]
    if missing:
        raise missing_arguments_error(qualname, missing)
    return [values[n] for n in names]


def _file_check(qualname: str, input_name: str, kind: str, exists: FileExists | None) -> Any:
    def check(values: Mapping[str, Any]) -> bool | str:
        (name,) = _require(qualname, (input_name,), values)
        if not isinstance(name, str):
            # ComfyUI calls name.endswith(...) on whatever it got.
            raise AttributeError(f"'{type(name).__name__}' object has no attribute 'endswith'")
        if exists is not None and not exists(name):
            return f"Invalid {kind} file: {name}"
        return True

    return check


_KLING_INPUTS = ("horizontal_movement", "vertical_movement", "pan", "tilt", "roll", "zoom")


def _kling_camera(values: Mapping[str, Any]) -> bool | str:
    numbers = _require("KlingCameraControls.validate_inputs", _KLING_INPUTS, values)
    if any(not math.isclose(v, 0.0) for v in numbers):
        return True
    return "Invalid camera control configs: at least one of the values must be non-zero"


def _aspect_ratio(values: Mapping[str, Any]) -> bool | str:
    (ratio_text,) = _require("FluxProUltraImageNode.validate_inputs", ("aspect_ratio",), values)
    try:
        parts = ratio_text.split(":")
        if len(parts) != 2:
            return f"Aspect ratio must be in the format X:Y, such as 16:9, but was {ratio_text}."
        try:
            ratio = int(parts[0]) / int(parts[1])
        except ValueError:
            return (
                "Aspect ratio must contain numbers separated by ':', such as 16:9, "
                f"but was {ratio_text}."
            )
    except Exception as exc:  # noqa: BLE001 - the hook turns any failure into its text
        return str(exc)
    if ratio < 0.25:
        return (
            f"Aspect ratio cannot reduce to any less than 1:4 (0.25), "
            f"but was {ratio_text} ({ratio})."
        )
    if ratio > 4.0:
        return (
            f"Aspect ratio cannot reduce to any greater than 4:1 (4.0), "
            f"but was {ratio_text} ({ratio})."
        )
    return True


_TASK_TYPES = ("MODEL_TASK_ID", "RIG_TASK_ID", "RETARGET_TASK_ID")


def _tripo_conversion(values: Mapping[str, Any]) -> bool | str:
    (received,) = _require("TripoConversionNode.VALIDATE_INPUTS", ("input_types",), values)
    if received["original_model_task_id"] not in _TASK_TYPES:
        return "original_model_task_id must be MODEL_TASK_ID, RIG_TASK_ID or RETARGET_TASK_ID type"
    return True


#: Stock Load* nodes whose hook checks that the named file exists: class -> (input, kind, hook).
FILE_INPUT_NODES: Mapping[str, tuple[str, str, str]] = {
    "LoadImage": ("image", "image", "LoadImage.VALIDATE_INPUTS"),
    "LoadImageOutput": ("image", "image", "LoadImage.VALIDATE_INPUTS"),
    "WebcamCapture": ("image", "image", "LoadImage.VALIDATE_INPUTS"),
    "LoadImageMask": ("image", "image", "LoadImageMask.VALIDATE_INPUTS"),
    "LoadLatent": ("latent", "latent", "LoadLatent.VALIDATE_INPUTS"),
    "LoadAudio": ("audio", "audio", "LoadAudio.VALIDATE_INPUTS"),
    "LoadVideo": ("file", "video", "LoadVideo.validate_inputs"),
}


def stock_validations(exists: FileExists | None = None) -> dict[str, CustomValidation]:
    """The hooks of ComfyUI 0.3.64's stock nodes.

    `exists` answers whether a file named by a Load* node is on the server (names may carry
    a ` [output]`/` [temp]` annotation; see `split_annotation`). Without it, file names are
    not checked, but the hooks still shape validation as on the server.
    """
    hooks: dict[str, CustomValidation] = {
        class_type: CustomValidation((name,), _file_check(qualname, name, kind, exists))
        for class_type, (name, kind, qualname) in FILE_INPUT_NODES.items()
    }
    hooks["KlingCameraControls"] = CustomValidation(_KLING_INPUTS, _kling_camera)
    hooks["FluxProUltraImageNode"] = CustomValidation(("aspect_ratio",), _aspect_ratio)
    hooks["TripoConversionNode"] = CustomValidation(("input_types",), _tripo_conversion)
    return hooks
