"""A custom node class (ComfyUI's V1 node API) as the server sees it: info, checks, runs.

* `node_info`: its /object_info entry, built like server.py's `node_info`: `input` (from
  `INPUT_TYPES()`), `input_order`, `output` (`RETURN_TYPES`), `output_is_list`
  (`OUTPUT_IS_LIST` or all False), `output_name` (`RETURN_NAMES` or the types), `name`,
  `display_name` (`NODE_DISPLAY_NAME_MAPPINGS` or the name), `description` (`DESCRIPTION`),
  `python_module` (`custom_nodes.<pack>`), `category` (`CATEGORY`, else "sd"), `output_node`
  (`OUTPUT_NODE == True`), then `output_tooltips`, `deprecated`, `experimental`, `api_node`
  when the class sets `OUTPUT_TOOLTIPS`, `DEPRECATED`, `EXPERIMENTAL`, `API_NODE`.
* `pack_validation`: its `VALIDATE_INPUTS` as a `graph.custom.CustomValidation` (the inputs
  it names skip the server's own checks; `**kwargs` takes every input).
* `pack_impl`: runs it for real. One instance per node id (kept while the node stays in the
  cache), `FUNCTION` called with the node's inputs as keyword arguments: a plain function in a
  worker thread (as ComfyUI runs nodes outside its event loop), a coroutine function awaited.
  A tuple is the outputs; a dict may carry `ui` (merged into `executed` and the history) and
  `result`. Over `ValueList` inputs the function runs once per item (all at once with
  `INPUT_IS_LIST`); outputs of several runs, or flagged in `OUTPUT_IS_LIST`, become
  `ValueList`s. `IS_CHANGED` is called like ComfyUI calls it: constants only, links as None.

What a node function receives: INT, FLOAT, STRING, BOOLEAN and combo values as Python values;
IMAGE a `values.Images` (Pillow RGB frames), MASK a `values.Masks`, LATENT a dict, model-side
types (MODEL, CLIP, CONDITIONING...) a `values.Opaque`; hidden inputs as ComfyUI gives them.
What it returns flows downstream unchanged, so a pack that returns `values.Images` feeds
SaveImage. ComfyUI's own modules (`comfy`, `folder_paths`, `server`, `nodes`) are not
importable here; node expansion (`expand`) and lazy inputs are not simulated.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable, Hashable, Mapping
from types import TracebackType
from typing import Any

from comfyfleet.graph.custom import CustomValidation
from comfyfleet.sandbox.comfy.graph_run import is_link, to_hashable
from comfyfleet.sandbox.comfy.layout import Layout
from comfyfleet.sandbox.comfy.nodes_base import (
    IsChangedFn,
    NodeContext,
    NodeFailure,
    NodeImpl,
    NodeResult,
    exception_type_name,
    execution_frames,
)
from comfyfleet.sandbox.comfy.values import ValueList

_SECTIONS = ("required", "optional", "hidden")
#: Hidden inputs as IS_CHANGED gets them (no prompt or extra data at that point).
_HIDDEN_AT_IS_CHANGED: dict[str, Any] = {
    "PROMPT": {},
    "DYNPROMPT": None,
    "EXTRA_PNGINFO": None,
    "AUTH_TOKEN_COMFY_ORG": None,
    "API_KEY_COMFY_ORG": None,
}


def node_info(name: str, cls: Any, display_names: Mapping[str, str]) -> dict[str, Any]:
    """The class's /object_info entry, key for key and in ComfyUI's order."""
    # Attributes are read in ComfyUI's order, so a broken class fails on the same one.
    info: dict[str, Any] = {
        "input": cls.INPUT_TYPES(),
        "input_order": {key: list(value.keys()) for key, value in cls.INPUT_TYPES().items()},
        "output": cls.RETURN_TYPES,
    }
    returns = info["output"]
    info |= {
        "output_is_list": (
            cls.OUTPUT_IS_LIST if hasattr(cls, "OUTPUT_IS_LIST") else [False] * len(returns)
        ),
        "output_name": cls.RETURN_NAMES if hasattr(cls, "RETURN_NAMES") else returns,
        "name": name,
        "display_name": display_names.get(name, name),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),  # placed here, as ComfyUI fills it late
        "output_node": bool(hasattr(cls, "OUTPUT_NODE") and cls.OUTPUT_NODE == True),  # noqa: E712
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = cls.OUTPUT_TOOLTIPS
    if getattr(cls, "DEPRECATED", False):
        info["deprecated"] = True
    if getattr(cls, "EXPERIMENTAL", False):
        info["experimental"] = True
    if hasattr(cls, "API_NODE"):
        info["api_node"] = cls.API_NODE
    return info


def pack_validation(cls: Any) -> CustomValidation | None:
    """The class's VALIDATE_INPUTS hook, or None (no hook, or one that takes nothing)."""
    hook = getattr(cls, "VALIDATE_INPUTS", None)
    if hook is None:
        return None
    spec = inspect.getfullargspec(hook)
    if not spec.args and spec.varkw is None:
        return None  # ComfyUI never calls a hook without parameters

    def check(values: Mapping[str, Any]) -> bool | str:
        answer = hook(**values)
        return answer if isinstance(answer, bool) else str(answer)

    return CustomValidation(tuple(spec.args), check, all_inputs=spec.varkw is not None)


def pack_impl(cls: Any) -> NodeImpl:
    """Run the class for real; see the module docstring for what it receives and returns."""

    async def run(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
        node = ctx.state.get("object")
        if type(node) is not cls:
            node = cls()
            ctx.state["object"] = node
        function = getattr(node, cls.FUNCTION)
        returns = [await _call(ctx, function, kwargs) for kwargs in _calls(cls, inputs)]
        return _result(ctx, cls, returns)

    is_changed = _is_changed(cls) if hasattr(cls, "IS_CHANGED") else None
    # No simulated duration: the function's own work is the node's time.
    return NodeImpl(run, duration=0.0, is_changed=is_changed)


def _calls(cls: Any, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The keyword arguments of each call: one per list item, the last item repeating."""
    lists = {k: list(v) if isinstance(v, ValueList) else [v] for k, v in inputs.items()}
    if getattr(cls, "INPUT_IS_LIST", False):
        return [lists]
    if not lists:
        return [{}]
    longest = max(len(v) for v in lists.values())
    return [{k: v[i if len(v) > i else -1] for k, v in lists.items()} for i in range(longest)]


def _invoke(function: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Any, Exception | None]:
    try:
        return function(**kwargs), None
    except Exception as exc:  # noqa: BLE001 - handed back to the executor's loop
        return None, exc


async def _call(ctx: NodeContext, function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    error: Exception | None
    if inspect.iscoroutinefunction(function):
        try:
            return await function(**kwargs)
        except Exception as exc:  # noqa: BLE001 - becomes the node's execution_error
            error = exc
    else:
        value, error = await asyncio.to_thread(_invoke, function, kwargs)
        if error is None:
            return value
    raise _failure(ctx, error) from None


def _failure(ctx: NodeContext, exc: Exception) -> NodeFailure:
    """The node's error as ComfyUI reports it: its frames under `process_inputs`."""
    tb: TracebackType | None = exc.__traceback__
    own = traceback.format_tb(tb.tb_next) if tb is not None else []  # skip the calling frame
    return NodeFailure(
        exception_type_name(exc), str(exc), [*execution_frames(ctx.layout.root), *own]
    )


def _result(ctx: NodeContext, cls: Any, returns: list[Any]) -> NodeResult:
    results: list[Any] = []
    uis: list[Any] = []
    for answer in returns:
        if not isinstance(answer, dict):
            results.append(answer)
            continue
        if "ui" in answer:
            uis.append(answer["ui"])
        if "expand" in answer:
            raise NodeFailure(
                "NotImplementedError",
                "node expansion ('expand') is not simulated by the sandbox",
                execution_frames(ctx.layout.root),
            )
        if "result" in answer:
            results.append(answer["result"])
    outputs: list[Any] = []
    if results:
        count = len(results[0])
        flags = cls.OUTPUT_IS_LIST if hasattr(cls, "OUTPUT_IS_LIST") else [False] * count
        for index, as_list in zip(range(count), flags, strict=False):
            if as_list:
                outputs.append(ValueList(item for r in results for item in r[index]))
            else:
                values = [r[index] for r in results]
                outputs.append(values[0] if len(values) == 1 else ValueList(values))
    ui = {key: [v for u in uis for v in u[key]] for key in uis[0]} if uis else None
    return NodeResult(tuple(outputs), ui)


def _is_changed(cls: Any) -> IsChangedFn:
    def is_changed(layout: Layout, inputs: dict[str, Any], node_id: str) -> Hashable:
        declared = cls.INPUT_TYPES()
        values: dict[str, Any] = {}
        for name, value in inputs.items():
            spec = next((declared[s][name] for s in _SECTIONS if name in declared.get(s, {})), None)
            options = spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 else None
            raw_link = isinstance(options, dict) and bool(options.get("rawLink"))
            if is_link(value) and not raw_link:
                values[name] = None  # IS_CHANGED sees constants only
            elif spec is not None:
                values[name] = value
        hidden = {**_HIDDEN_AT_IS_CHANGED, "UNIQUE_ID": node_id}
        for name, kind in (declared.get("hidden") or {}).items():
            if kind in hidden:
                values[name] = hidden[kind]
        return to_hashable([cls.IS_CHANGED(**kwargs) for kwargs in _calls(cls, values)])

    return is_changed
