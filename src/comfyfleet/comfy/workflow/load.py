"""Load a ComfyUI workflow from a file, text or PNG, and tell which format it is in.

Accepted shapes:

* API format `{node_id: {"class_type", "inputs", "_meta"?}}`, also wrapped as the body of
  POST /prompt (`{"prompt": {...}, "extra_data": {"extra_pnginfo": {"workflow": ...}}}`) or as a
  /history entry (`{"prompt": [number, id, prompt, extra_data, outputs], "outputs": ...}`,
  optionally keyed by its prompt id);
* UI format (what the editor saves): `nodes` and `links`, version 0.4 (array links) or 1
  (object links), with subgraph definitions;
* PNG images ComfyUI saved: the `prompt` (API) and `workflow` (UI) text chunks.

When both formats are present the API prompt is the one used unless `prefer="ui"`; both stay
available on the result. Broken references (links to missing nodes) are refused here, with the
file and the node named.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from comfyfleet.comfy.workflow.ui_graph import check_links, parse_ui_graph
from comfyfleet.errors import UsageError, WorkflowFormatError

Format = Literal["api", "ui"]
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class LoadedWorkflow:
    """A workflow as loaded: the format used, both forms when known, where it came from."""

    format: Format
    api: dict[str, Any] | None
    ui: dict[str, Any] | None
    source: str
    sha256: str

    @property
    def data(self) -> dict[str, Any]:
        """The form `format` names."""
        chosen = self.api if self.format == "api" else self.ui
        assert chosen is not None
        return chosen


def canonical_json(data: Any) -> str:
    """Sorted keys, no spaces: the same document always gives the same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_workflow(
    path_or_text: str | Path | bytes | Mapping[str, Any], *, prefer: Format = "api"
) -> LoadedWorkflow:
    """Load a workflow from a path, JSON text, PNG bytes or an already parsed mapping."""
    if isinstance(path_or_text, Mapping):
        return _from_document(dict(path_or_text), "<workflow>", prefer)
    if isinstance(path_or_text, bytes):
        if path_or_text.startswith(_PNG_MAGIC):
            return _from_png(path_or_text, "<png>", prefer)
        return _from_text(path_or_text.decode("utf-8", errors="replace"), "<text>", prefer)
    if isinstance(path_or_text, str) and path_or_text.lstrip().startswith(("{", "[")):
        return _from_text(path_or_text, "<text>", prefer)
    path = Path(path_or_text)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(
            f"workflow file {source}: no such file",
            hint="check the path (a workflow saved from ComfyUI: Workflow > Save or Export (API))",
        ) from exc
    except OSError as exc:
        raise UsageError(
            f"workflow file {source} cannot be read ({exc.strerror or exc})",
            hint="give a readable JSON or PNG file",
        ) from exc
    if raw.startswith(_PNG_MAGIC):
        return _from_png(raw, source, prefer)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkflowFormatError(
            f"{source}: not a workflow (neither UTF-8 JSON nor a PNG)"
        ) from exc
    return _from_text(text, source, prefer)


def _from_text(text: str, source: str, prefer: Format) -> LoadedWorkflow:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFormatError(
            f"{source}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise WorkflowFormatError(
            f"{source}: a workflow is a JSON object, not {type(data).__name__}"
        )
    return _from_document(data, source, prefer)


def _from_png(raw: bytes, source: str, prefer: Format) -> LoadedWorkflow:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            chunks = dict(getattr(image, "text", {}) or {})
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise WorkflowFormatError(f"{source}: unreadable PNG ({exc})") from exc
    api = _png_json(chunks, "prompt", source)
    ui = _png_json(chunks, "workflow", source)
    if api is None and ui is None:
        raise WorkflowFormatError(
            f"{source}: this PNG carries no ComfyUI workflow (no 'prompt' or 'workflow' chunk)",
            hint="only images saved by ComfyUI's Save Image node embed their workflow",
        )
    if api is not None and not _is_api(api):
        raise WorkflowFormatError(f"{source}: the PNG's 'prompt' chunk is not an API prompt")
    if ui is not None and not _is_ui(ui):
        ui = None
    return _result(api, ui, source, prefer)


def _png_json(chunks: Mapping[str, Any], key: str, source: str) -> dict[str, Any] | None:
    text = chunks.get(key)
    if text is None:
        return None
    try:
        data = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise WorkflowFormatError(f"{source}: the PNG's '{key}' chunk is not JSON") from exc
    if not isinstance(data, dict):
        raise WorkflowFormatError(f"{source}: the PNG's '{key}' chunk is not a JSON object")
    return data


def _from_document(data: dict[str, Any], source: str, prefer: Format) -> LoadedWorkflow:
    if _is_ui(data):
        return _result(None, data, source, "ui")
    if _is_api(data):
        return _result(data, None, source, "api")
    unwrapped = _unwrap(data)
    if unwrapped is not None:
        api, ui = unwrapped
        return _result(api, ui, source, prefer)
    raise WorkflowFormatError(
        f"{source}: neither a UI workflow (needs 'nodes' and 'links') nor an API prompt "
        "(needs node ids mapping to objects with 'class_type' and 'inputs')",
        hint="save the workflow from ComfyUI with Workflow > Save, or Export (API)",
    )


def _unwrap(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The prompt (and embedded workflow) of a POST /prompt body or a /history entry."""
    if len(data) == 1:
        only = next(iter(data.values()))
        if isinstance(only, Mapping) and isinstance(only.get("prompt"), list):
            data = only
    prompt = data.get("prompt")
    extra: Any = data.get("extra_data")
    if isinstance(prompt, list) and len(prompt) >= 3:  # history: [number, id, prompt, extra, …]
        extra = prompt[3] if len(prompt) > 3 else None
        prompt = prompt[2]
    if not isinstance(prompt, dict) or not _is_api(prompt):
        return None
    workflow = None
    if isinstance(extra, Mapping) and isinstance(extra.get("extra_pnginfo"), Mapping):
        workflow = extra["extra_pnginfo"].get("workflow")
    return prompt, workflow if isinstance(workflow, dict) and _is_ui(workflow) else None


def _is_ui(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("nodes"), list) and isinstance(data.get("links", []), list)


def _is_api(data: Mapping[str, Any]) -> bool:
    if not data:
        return False
    return all(isinstance(v, Mapping) and "class_type" in v for v in data.values())


def _result(
    api: dict[str, Any] | None, ui: dict[str, Any] | None, source: str, prefer: Format
) -> LoadedWorkflow:
    if api is not None:
        check_api(api, source)
    if ui is not None:
        check_links(parse_ui_graph(ui, source), source)
    fmt: Format = "ui" if (prefer == "ui" and ui is not None) or api is None else "api"
    chosen = api if fmt == "api" else ui
    digest = hashlib.sha256(canonical_json(chosen).encode()).hexdigest()
    return LoadedWorkflow(fmt, api, ui, source, digest)


def check_api(prompt: Mapping[str, Any], source: str = "workflow") -> None:
    """Every node has a class and an inputs object; every link names an existing node."""
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise WorkflowFormatError(f"{source}: node {node_id} has no class_type")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            raise WorkflowFormatError(
                f"{source}: node {node_id} ({class_type}): 'inputs' is not an object"
            )
        for name, value in inputs.items():
            if _is_link(value) and str(value[0]) not in prompt:
                raise WorkflowFormatError(
                    f"{source}: node {node_id} ({class_type}) input '{name}' links to missing "
                    f"node {value[0]}"
                )


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )
