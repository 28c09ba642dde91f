"""Offline validation: the answer a ComfyUI server would give to a prompt, computed locally.

`validate_offline` runs ComfyUI's own validation (`graph.validate`) against a node catalog,
optionally with another server's model lists and the input files at hand. The rest turns
ComfyUI's wire-shape errors (offline or from a 400 answer) into `WorkflowInvalid` with
messages that read well in a terminal; it does no I/O, so the HTTP client reuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from comfyfleet.errors import NodeError, NodeErrorDetail, PromptRejected, WorkflowInvalid
from comfyfleet.graph.custom import CustomValidation, split_annotation, stock_validations
from comfyfleet.graph.input_files import file_inputs_of
from comfyfleet.graph.model_folders import model_folder_for, with_model_lists
from comfyfleet.graph.prompt import prompt_titles
from comfyfleet.graph.validate import PromptValidation, validate_prompt
from comfyfleet.models.comfy import parse_node_errors
from comfyfleet.models.nodes import NodeCatalog


def _exists_in(input_files: Collection[str]) -> Callable[[str], bool]:
    names = set(input_files)

    def exists(annotated: str) -> bool:
        name, folder = split_annotation(annotated)
        if folder in ("output", "temp"):
            return True  # files the server made itself: nothing local to check against
        return name in names  # as on a Linux server: "a\\b.png" is not "a/b.png"

    return exists


def _accept_any(_values: Mapping[str, Any]) -> bool:
    return True


def _file_hooks(
    prompt: Mapping[str, Any], catalog: NodeCatalog, input_files: Collection[str] | None
) -> tuple[dict[str, CustomValidation], NodeCatalog]:
    """Hooks (and a catalog) that check input-folder files against `input_files`, or not at all.

    Stock Load* nodes have hooks. Other nodes with upload inputs are plain combos on the
    server: with `input_files` they list those files; without, they are not checked.
    """
    hooks = stock_validations(None if input_files is None else _exists_in(input_files))
    used = {n.get("class_type") for n in prompt.values() if isinstance(n, Mapping)}
    patched: dict[str, Any] = {}
    for class_type in sorted(c for c in used if isinstance(c, str) and c in catalog):
        if class_type in hooks:
            continue
        node = catalog[class_type]
        names = tuple(name for name, _kind in file_inputs_of(node))
        if not names:
            continue
        if input_files is None:
            hooks[class_type] = CustomValidation(names, _accept_any)
            continue
        entry = dict(node.raw)
        sections = {k: dict(v or {}) for k, v in (entry.get("input") or {}).items()}
        for name in names:
            spec = node.inputs[name]
            if isinstance(spec.raw, list) and spec.raw and isinstance(spec.raw[0], list):
                sections[spec.section][name] = [sorted(input_files), *spec.raw[1:]]
        entry["input"] = sections
        patched[class_type] = entry
    if patched:
        catalog = NodeCatalog({**catalog.raw, **patched})
    return hooks, catalog


def validate_offline(
    prompt: Mapping[str, Any],
    catalog: NodeCatalog,
    *,
    model_lists: Mapping[str, Sequence[str]] | None = None,
    input_files: Collection[str] | None = None,
    partial_targets: Sequence[str] | None = None,
) -> PromptValidation:
    """What a server with `catalog` would answer to `prompt`, without asking it.

    `model_lists` (folder -> file names) replaces the options of model inputs, so a captured
    object_info can be checked against another server's models. Files named by LoadImage-like
    inputs are checked against `input_files` when given, and not at all otherwise (they are
    uploaded at run time).
    """
    return _validate(prompt, catalog, model_lists, input_files, partial_targets)[0]


def _validate(
    prompt: Mapping[str, Any],
    catalog: NodeCatalog,
    model_lists: Mapping[str, Sequence[str]] | None,
    input_files: Collection[str] | None,
    partial_targets: Sequence[str] | None,
) -> tuple[PromptValidation, NodeCatalog]:
    """The result and the catalog it was checked against (with the model lists applied)."""
    if model_lists is not None:
        catalog = with_model_lists(catalog, model_lists)
    hooks, catalog = _file_hooks(prompt, catalog, input_files)
    result = validate_prompt(prompt, catalog, partial_targets=partial_targets, custom=hooks)
    return result, catalog


def ensure_valid(
    prompt: Mapping[str, Any],
    catalog: NodeCatalog,
    *,
    model_lists: Mapping[str, Sequence[str]] | None = None,
    input_files: Collection[str] | None = None,
    partial_targets: Sequence[str] | None = None,
    strict: bool = False,
) -> list[str]:
    """The output nodes that will run; raises WorkflowInvalid when the server would refuse.

    A prompt the server accepts with some outputs dropped passes, unless `strict`.
    """
    result, catalog = _validate(prompt, catalog, model_lists, input_files, partial_targets)
    titles = prompt_titles(prompt)
    if not result.ok:
        raise invalid_from_wire(result.error_body(), rejected=False, titles=titles, catalog=catalog)
    if strict and result.node_errors:
        node_errors = node_errors_from_wire(result.node_errors, titles=titles, catalog=catalog)
        raise WorkflowInvalid(
            "partially_invalid",
            "Some outputs failed validation and would be skipped",
            node_errors,
            hint=_hint("prompt_outputs_failed_validation", "", node_errors, catalog),
        )
    return result.outputs


def node_errors_from_wire(
    value: Any,
    *,
    titles: Mapping[str, str] | None = None,
    catalog: NodeCatalog | None = None,
) -> list[NodeError]:
    """Parse ComfyUI's `node_errors`; long option lists the server left out come from `catalog`."""
    out: list[NodeError] = []
    for node_error in parse_node_errors(value, titles):
        details = [_with_allowed(node_error.class_type, d, catalog) for d in node_error.errors]
        out.append(replace(node_error, errors=tuple(details)))
    return out


def _with_allowed(
    class_type: str, detail: NodeErrorDetail, catalog: NodeCatalog | None
) -> NodeErrorDetail:
    if detail.type != "value_not_in_list" or detail.allowed is not None or catalog is None:
        return detail
    if class_type not in catalog or detail.input_name is None:
        return detail
    spec = catalog[class_type].inputs.get(detail.input_name)
    if spec is None or spec.choices is None:
        return detail
    return replace(detail, allowed=spec.choices)


def invalid_from_wire(
    body: Mapping[str, Any],
    *,
    rejected: bool,
    titles: Mapping[str, str] | None = None,
    catalog: NodeCatalog | None = None,
) -> WorkflowInvalid:
    """`WorkflowInvalid` (or `PromptRejected` when the server said 400) from a wire body."""
    error = body.get("error")
    if isinstance(error, Mapping):
        error_type = str(error.get("type") or "invalid_prompt")
        message = str(error.get("message") or "The prompt is invalid")
        details = str(error.get("details") or "")
    else:
        error_type, message, details = "invalid_prompt", str(error or "The prompt is invalid"), ""
    node_errors = node_errors_from_wire(body.get("node_errors"), titles=titles, catalog=catalog)
    cls = PromptRejected if rejected else WorkflowInvalid
    return cls(
        error_type,
        message,
        node_errors,
        details=details,
        hint=_hint(error_type, message, node_errors, catalog),
    )


def accepted_warnings(node_errors: Sequence[NodeError]) -> list[str]:
    """One line per node that failed in a prompt the server accepted: what it skips and why."""
    lines = []
    for ne in node_errors:
        title = f" '{ne.title}'" if ne.title and ne.title != ne.class_type else ""
        reasons = "; ".join(
            (f"input '{e.input_name}': " if e.input_name else "") + e.describe() for e in ne.errors
        )
        skipped = ", ".join(ne.dependent_outputs) or "none"
        lines.append(
            f"node {ne.node_id} ({ne.class_type}){title} is invalid: {reasons} "
            f"(outputs not run: {skipped})"
        )
    return lines


_LINK_ERRORS = frozenset(
    {
        "bad_linked_input",
        "return_type_mismatch",
        "exception_during_validation",
        "exception_during_inner_validation",
    }
)


def _hint(
    error_type: str, message: str, node_errors: Sequence[NodeError], catalog: NodeCatalog | None
) -> str | None:
    if error_type == "invalid_prompt" and "does not exist" in message:
        return "the server lacks this node class: install the custom node pack that provides it"
    if error_type == "invalid_prompt":
        return "every node needs a class_type: is this an API-format prompt?"
    if error_type == "prompt_no_outputs":
        return "the workflow needs an output node (SaveImage, PreviewImage, ...) that will run"
    models: list[str] = []
    files: list[str] = []
    missing: list[str] = []
    values: list[str] = []
    links: list[str] = []
    for ne in node_errors:
        for err in ne.errors:
            where = f"{ne.node_id}.{err.input_name}" if err.input_name else ne.node_id
            if err.type == "required_input_missing":
                missing.append(where)
            elif err.type in (
                "invalid_input_type",
                "value_smaller_than_min",
                "value_bigger_than_max",
            ):
                values.append(where)
            elif err.type in _LINK_ERRORS:
                links.append(where)
            elif err.type == "custom_validation_failed" and err.input_name is not None:
                files.append(where)
            elif err.type == "value_not_in_list" and err.input_name is not None:
                spec = None
                if catalog is not None and ne.class_type in catalog:
                    spec = catalog[ne.class_type].inputs.get(err.input_name)
                folder = model_folder_for(ne.class_type, err.input_name, spec)
                if folder is not None:
                    models.append(f"{folder}/{err.extra_info.get('received_value')}")
                else:
                    values.append(where)
    parts = []
    if models:
        parts.append(f"model files missing on the server: {', '.join(models)}")
    if files:
        parts.append(f"upload input files with --input NODE.INPUT=PATH ({', '.join(files)})")
    if missing:
        parts.append(f"connect or --set the missing inputs ({', '.join(missing)})")
    if values:
        parts.append(f"fix these values with --set NODE.INPUT=VALUE ({', '.join(values)})")
    if links:
        parts.append(f"broken links ({', '.join(links)}): export the workflow again from ComfyUI")
    return "; ".join(parts) or None
