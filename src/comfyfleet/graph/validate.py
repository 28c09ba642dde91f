"""ComfyUI's prompt validation (0.3.64 `execution.validate_prompt`), reproduced exactly.

Given a prompt and the server's node catalog, `validate_prompt` answers what POST /prompt
answers: accepted or not, the top-level `error`, and `node_errors` in ComfyUI's wire shape,
with the same types, messages, details, order and `dependent_outputs`. The sandbox server
answers with it; the offline validator wraps it.

Where ComfyUI iterates a Python set (output nodes, a node's inputs), the order depends on the
server's hash seed; here it is the prompt's node order and the catalog's `input_order`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.graph.crash import ValidationCrash
from comfyfleet.graph.custom import CustomValidation, CustomValidator, stock_validations
from comfyfleet.graph.node_validation import NodeValidator, error_entry
from comfyfleet.models.nodes import NodeCatalog

__all__ = [
    "CustomValidation",
    "CustomValidator",
    "PromptValidation",
    "validate_prompt",
]


@dataclass(frozen=True)
class PromptValidation:
    """What ComfyUI decides about a prompt."""

    ok: bool  # True -> ComfyUI answers 200 (at least one output validated)
    error: dict[str, Any] | None  # top-level {"type","message","details","extra_info"} if not ok
    node_errors: dict[str, Any]  # {node_id: {"errors", "dependent_outputs", "class_type"}}
    outputs: list[str]  # output node ids that validated and will execute
    #: The prompt as the server queues it: values converted, `__value__` unwrapped.
    prompt: dict[str, Any] = field(default_factory=dict)

    def error_body(self) -> dict[str, Any]:
        """The JSON body of the 400 answer (meaningful when not ok)."""
        return {"error": self.error, "node_errors": self.node_errors}


def _rejected(error: dict[str, Any], prompt: dict[str, Any]) -> PromptValidation:
    return PromptValidation(False, error, {}, [], prompt)


def _invalid_prompt(message: str, node_id: Any, prompt: dict[str, Any]) -> PromptValidation:
    return _rejected(error_entry("invalid_prompt", message, f"Node ID '#{node_id}'", {}), prompt)


def validate_prompt(
    prompt: Mapping[str, Any],
    catalog: NodeCatalog,
    *,
    partial_targets: Sequence[str] | None = None,
    custom: Mapping[str, CustomValidation] | None = None,
) -> PromptValidation:
    """Validate `prompt` exactly as ComfyUI 0.3.64 does against `catalog`.

    `partial_targets` is the request's `partial_execution_targets`. `custom` maps class types
    to their validation hooks; None means the stock hooks without file checks
    (`stock_validations()`), and a mapping replaces them entirely. `prompt` is not modified.
    Raises TypeError when `prompt` is not a JSON object (the server then fails with 500).
    """
    if not isinstance(prompt, Mapping):
        raise TypeError(f"a prompt is a JSON object of nodes, not {type(prompt).__name__}")
    work: dict[str, Any] = copy.deepcopy(dict(prompt))
    hooks = stock_validations() if custom is None else custom

    outputs: list[str] = []
    for node_id, node in work.items():
        if not isinstance(node, Mapping) or "class_type" not in node:
            return _invalid_prompt(
                "Cannot execute because a node is missing the class_type property.", node_id, work
            )
        class_type = node["class_type"]
        if not isinstance(class_type, str) or class_type not in catalog:
            return _invalid_prompt(
                f"Cannot execute because node {class_type} does not exist.", node_id, work
            )
        if catalog[class_type].output_node and (
            partial_targets is None or node_id in partial_targets
        ):
            outputs.append(node_id)

    if not outputs:
        return _rejected(error_entry("prompt_no_outputs", "Prompt has no outputs", "", {}), work)

    checker = NodeValidator(work, catalog, hooks)
    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        try:
            valid, reasons, _ = checker.validate(output)
        except ValidationCrash as crash:
            valid = False
            reasons = [
                error_entry(
                    "exception_during_validation",
                    "Exception when validating node",
                    crash.message,
                    {
                        "exception_type": crash.exception_type,
                        "traceback": crash.traceback("prompt"),
                    },
                )
            ]
            checker.validated[output] = (False, reasons, output)
        if valid is True:
            good.append(output)
            continue
        failed.append((output, reasons))
        # Every failing node seen so far gains this output as a dependent, as on the server
        # (even when this output does not depend on it). Nodes that are invalid only because
        # of an upstream failure carry no errors and are left out.
        for node_id, (node_valid, node_reasons, _) in checker.validated.items():
            if node_valid is not True and node_reasons:
                entry = node_errors.get(node_id)
                if entry is None:
                    entry = {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": work[node_id]["class_type"],
                    }
                    node_errors[node_id] = entry
                entry["dependent_outputs"].append(output)

    if not good:
        # Only the output nodes' own errors make it into `details`, as on the server.
        details = "\n".join(
            f"{reason['message']}: {reason['details']}"
            for _, reasons in failed
            for reason in reasons
        )
        error = error_entry(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {}
        )
        return PromptValidation(False, error, node_errors, [], work)
    return PromptValidation(True, None, node_errors, good, work)
