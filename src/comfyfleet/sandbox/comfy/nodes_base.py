"""What a simulated node gets (`NodeContext`), returns (`NodeResult`) and raises (`NodeFailure`).

Node functions receive their inputs by name (links already resolved) and run inside the
executor, which has already slept the node's simulated duration unless the node is `stepped`
(samplers sleep per step and report progress through `ctx.progress`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfleet.models.nodes import NodeDef
from comfyfleet.sandbox.comfy.hub import Preview
from comfyfleet.sandbox.comfy.layout import Layout


@dataclass
class NodeContext:
    """One run of one node."""

    node_id: str
    class_type: str
    prompt_id: str
    definition: NodeDef
    layout: Layout
    state: dict[
        str, Any
    ]  # survives across prompts for the same node id and class, like ComfyUI's objects
    duration: float  # simulated seconds (per step for stepped nodes)
    slow: float | None  # knob: the whole run should take this long (stepped nodes spread it)
    preview_method: str
    progress: Callable[[int, int, Preview | None], Awaitable[None]]
    send_text: Callable[[str], None]
    sleep: Callable[[float], Awaitable[None]]


def step_time(ctx: NodeContext, steps: int) -> float:
    """Simulated seconds per step of a stepped node (the `slow` knob spreads over the steps)."""
    return ctx.slow / steps if ctx.slow is not None else ctx.duration


@dataclass
class NodeResult:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None


NodeFn = Callable[[NodeContext, dict[str, Any]], Awaitable[NodeResult]]
#: IS_CHANGED: (layout, the node's prompt inputs, node id) -> a value; a new value = re-run.
IsChangedFn = Callable[[Layout, dict[str, Any], str], Any]


@dataclass(frozen=True)
class NodeImpl:
    fn: NodeFn
    duration: float = 0.05
    stepped: bool = False
    is_changed: IsChangedFn | None = None


class NodeFailure(Exception):
    """A node failed the way a real node would: ComfyUI's exception type name, message, frames."""

    def __init__(self, exception_type: str, message: str, frames: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.frames = list(frames)


@dataclass
class Registry:
    """Node class -> implementation; classes not listed run as typed stand-ins."""

    impls: dict[str, NodeImpl] = field(default_factory=dict)

    def add(
        self,
        *class_types: str,
        duration: float = 0.05,
        stepped: bool = False,
        is_changed: IsChangedFn | None = None,
    ) -> Callable[[NodeFn], NodeFn]:
        def register(fn: NodeFn) -> NodeFn:
            for class_type in class_types:
                self.impls[class_type] = NodeImpl(fn, duration, stepped, is_changed)
            return fn

        return register


def exception_type_name(exc: BaseException) -> str:
    """How ComfyUI names an exception type in errors: `module.Qualname`, builtins bare."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def frame(root: Path, file: str, line: int, func: str, code: str, marks: str | None = None) -> str:
    """One `traceback.format_tb` entry, with the sandbox root standing in for ComfyUI's checkout."""
    text = f'  File "{root}/{file}", line {line}, in {func}\n    {code}\n'
    if marks:
        text += f"    {marks}\n"
    return text


def execution_frames(root: Path) -> list[str]:
    """The frames every node failure starts with in ComfyUI 0.3.64 (execution.py)."""
    call = (
        "output_data, output_ui, has_subgraph, has_pending_tasks = "
        "await get_output_data(prompt_id, "
        "unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, "
        "pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)"
    )
    get = (
        "return_values = await _async_map_node_over_list("
        "prompt_id, unique_id, obj, input_data_all, "
        "obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, "
        "pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)"
    )
    return [
        frame(root, "execution.py", 496, "execute", call),
        frame(root, "execution.py", 315, "get_output_data", get),
        frame(
            root,
            "execution.py",
            289,
            "_async_map_node_over_list",
            "await process_inputs(input_dict, i)",
        ),
        frame(root, "execution.py", 277, "process_inputs", "result = f(**inputs)", "^" * 11),
    ]
