"""Typed ComfyUI WebSocket events and `parse_event` for text and binary frames.

Text frames are `{"type": T, "data": {...}}`; binary frames start with a big-endian u32
event type: 1 = preview image (u32 format, then bytes), 3 = progress text (u32 length,
node id, text), 4 = preview image with a JSON metadata header. `Reconnected` is not a server
frame: the client's event stream yields it after it reopened a dropped socket.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.errors import ComfyProtocolError
from comfyfleet.models.comfy import (
    NodeOutput,
    wire_int,
    wire_list,
    wire_num,
    wire_obj,
    wire_opt_str,
    wire_str,
    wire_str_list,
)

PREVIEW_IMAGE = 1
PROGRESS_TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

_IMAGE_FORMATS = {1: ("jpeg", "image/jpeg"), 2: ("png", "image/png")}


@dataclass(frozen=True)
class Status:
    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str
    nodes: tuple[str, ...]
    timestamp: int | None = None


@dataclass(frozen=True)
class Executing:
    """A node started (`node` set) or, with `node` None, the prompt is over and in history."""

    node: str | None
    display_node: str | None
    prompt_id: str | None


@dataclass(frozen=True)
class Progress:
    value: float
    max: float
    node: str | None
    prompt_id: str | None


@dataclass(frozen=True)
class NodeProgress:
    value: float
    max: float
    state: str
    node_id: str
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None


@dataclass(frozen=True)
class ProgressState:
    prompt_id: str
    nodes: Mapping[str, NodeProgress]


@dataclass(frozen=True)
class Executed:
    node: str
    display_node: str | None
    output: NodeOutput
    prompt_id: str | None


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str
    node_type: str
    executed: tuple[str, ...]
    exception_message: str
    exception_type: str
    traceback: tuple[str, ...]
    current_inputs: Mapping[str, Any] = field(default_factory=dict)
    current_outputs: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class PreviewImage:
    """A preview from a running node (binary type 1, or 4 with metadata naming node + prompt)."""

    format: str
    mime: str
    data: bytes = field(repr=False)
    metadata: Mapping[str, Any] | None = None

    @property
    def prompt_id(self) -> str | None:
        value = (self.metadata or {}).get("prompt_id")
        return value if isinstance(value, str) else None

    @property
    def node_id(self) -> str | None:
        value = (self.metadata or {}).get("node_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ProgressText:
    node_id: str
    text: str


@dataclass(frozen=True)
class FeatureFlags:
    flags: Mapping[str, Any]

    @property
    def supports_preview_metadata(self) -> bool:
        return bool(self.flags.get("supports_preview_metadata", False))

    @property
    def max_upload_size(self) -> int | None:
        value = self.flags.get("max_upload_size")
        return value if isinstance(value, int) else None


@dataclass(frozen=True)
class Reconnected:
    """The stream reopened its socket (same clientId) after `attempt` tries."""

    attempt: int


@dataclass(frozen=True)
class Unknown:
    """A frame of a type this client does not know; kept so callers can still see it."""

    type: str
    data: Any = field(repr=False)


Event = (
    Status
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | PreviewImage
    | ProgressText
    | FeatureFlags
    | Reconnected
    | Unknown
)


def event_prompt_id(event: Event) -> str | None:
    """The prompt an event belongs to, when the frame says so."""
    value = getattr(event, "prompt_id", None)
    return value if isinstance(value, str) else None


def parse_event(frame: str | bytes) -> Event:
    """Parse one WebSocket frame; unparseable frames raise ComfyProtocolError."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return _parse_binary(bytes(frame))
    try:
        message = json.loads(frame)
    except ValueError as exc:
        raise ComfyProtocolError(f"WebSocket text frame is not JSON: {frame[:80]!r}") from exc
    body = wire_obj(message, "WebSocket message")
    return parse_event_data(wire_str(body.get("type"), "WebSocket message.type"), body.get("data"))


def parse_event_data(type_: str, data: Any) -> Event:
    """Parse the `data` of a message of type `type_` (also used for /history's messages)."""
    parser = _TEXT_PARSERS.get(type_)
    if parser is None:
        return Unknown(type_, data)
    return parser(wire_obj(data, f"{type_}.data"))


def _ts(data: Mapping[str, Any]) -> int | None:
    value = data.get("timestamp")
    return None if value is None else int(wire_num(value, "timestamp"))


def _status(d: Mapping[str, Any]) -> Status:
    status = wire_obj(d.get("status") or {}, "status.status")
    info = wire_obj(status.get("exec_info") or {}, "status.exec_info")
    return Status(
        queue_remaining=wire_int(info.get("queue_remaining", 0), "queue_remaining"),
        sid=wire_opt_str(d.get("sid"), "status.sid"),
    )


def _execution_cached(d: Mapping[str, Any]) -> ExecutionCached:
    nodes = tuple(str(n) for n in wire_list(d.get("nodes", []), "execution_cached.nodes"))
    prompt_id = wire_str(d.get("prompt_id"), "execution_cached.prompt_id")
    return ExecutionCached(prompt_id, nodes, _ts(d))


def _executing(d: Mapping[str, Any]) -> Executing:
    return Executing(
        node=wire_opt_str(d.get("node"), "executing.node"),
        display_node=wire_opt_str(d.get("display_node"), "executing.display_node"),
        prompt_id=wire_opt_str(d.get("prompt_id"), "executing.prompt_id"),
    )


def _progress(d: Mapping[str, Any]) -> Progress:
    return Progress(
        value=wire_num(d.get("value"), "progress.value"),
        max=wire_num(d.get("max"), "progress.max"),
        node=wire_opt_str(d.get("node"), "progress.node"),
        prompt_id=wire_opt_str(d.get("prompt_id"), "progress.prompt_id"),
    )


def _progress_state(d: Mapping[str, Any]) -> ProgressState:
    nodes: dict[str, NodeProgress] = {}
    for key, raw in wire_obj(d.get("nodes") or {}, "progress_state.nodes").items():
        n = wire_obj(raw, f"progress_state.nodes[{key}]")
        nodes[str(key)] = NodeProgress(
            value=wire_num(n.get("value", 0), "progress_state.value"),
            max=wire_num(n.get("max", 1), "progress_state.max"),
            state=wire_str(n.get("state", ""), "progress_state.state"),
            node_id=wire_opt_str(n.get("node_id"), "progress_state.node_id") or str(key),
            display_node_id=wire_opt_str(n.get("display_node_id"), "display_node_id"),
            parent_node_id=wire_opt_str(n.get("parent_node_id"), "parent_node_id"),
            real_node_id=wire_opt_str(n.get("real_node_id"), "real_node_id"),
        )
    return ProgressState(wire_str(d.get("prompt_id"), "progress_state.prompt_id"), nodes)


def _executed(d: Mapping[str, Any]) -> Executed:
    return Executed(
        node=wire_opt_str(d.get("node"), "executed.node") or "",
        display_node=wire_opt_str(d.get("display_node"), "executed.display_node"),
        output=NodeOutput.from_wire(d.get("output"), "executed.output"),
        prompt_id=wire_opt_str(d.get("prompt_id"), "executed.prompt_id"),
    )


def _execution_error(d: Mapping[str, Any]) -> ExecutionError:
    return ExecutionError(
        prompt_id=wire_str(d.get("prompt_id"), "execution_error.prompt_id"),
        node_id=wire_opt_str(d.get("node_id"), "execution_error.node_id") or "",
        node_type=wire_opt_str(d.get("node_type"), "execution_error.node_type") or "",
        executed=tuple(str(n) for n in wire_list(d.get("executed", []), "executed")),
        exception_message=str(d.get("exception_message") or ""),
        exception_type=str(d.get("exception_type") or ""),
        traceback=wire_str_list(d.get("traceback", []), "execution_error.traceback"),
        current_inputs=wire_obj(d.get("current_inputs") or {}, "current_inputs"),
        current_outputs=tuple(str(n) for n in wire_list(d.get("current_outputs", []), "outs")),
        timestamp=_ts(d),
    )


def _execution_interrupted(d: Mapping[str, Any]) -> ExecutionInterrupted:
    return ExecutionInterrupted(
        prompt_id=wire_str(d.get("prompt_id"), "execution_interrupted.prompt_id"),
        node_id=wire_opt_str(d.get("node_id"), "execution_interrupted.node_id"),
        node_type=wire_opt_str(d.get("node_type"), "execution_interrupted.node_type"),
        executed=tuple(str(n) for n in wire_list(d.get("executed", []), "executed")),
        timestamp=_ts(d),
    )


_TEXT_PARSERS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "status": _status,
    "execution_start": lambda d: ExecutionStart(
        wire_str(d.get("prompt_id"), "execution_start.prompt_id"), _ts(d)
    ),
    "execution_cached": _execution_cached,
    "executing": _executing,
    "progress": _progress,
    "progress_state": _progress_state,
    "executed": _executed,
    "execution_success": lambda d: ExecutionSuccess(
        wire_str(d.get("prompt_id"), "execution_success.prompt_id"), _ts(d)
    ),
    "execution_error": _execution_error,
    "execution_interrupted": _execution_interrupted,
    "feature_flags": lambda d: FeatureFlags(dict(d)),
}


def _u32(frame: bytes, offset: int, what: str) -> int:
    if len(frame) < offset + 4:
        raise ComfyProtocolError(f"binary frame too short for {what} ({len(frame)} bytes)")
    value: int = struct.unpack_from(">I", frame, offset)[0]
    return value


def _parse_binary(frame: bytes) -> Event:
    kind = _u32(frame, 0, "the event type")
    if kind == PREVIEW_IMAGE:
        fmt, mime = _IMAGE_FORMATS.get(_u32(frame, 4, "the image format"), ("unknown", ""))
        return PreviewImage(fmt, mime or "application/octet-stream", frame[8:], None)
    if kind == PROGRESS_TEXT:
        size = _u32(frame, 4, "the node id length")
        if len(frame) < 8 + size:
            raise ComfyProtocolError("binary text frame shorter than its node id length")
        node_id = frame[8 : 8 + size].decode("utf-8", errors="replace")
        return ProgressText(node_id, frame[8 + size :].decode("utf-8", errors="replace"))
    if kind == PREVIEW_IMAGE_WITH_METADATA:
        size = _u32(frame, 4, "the metadata length")
        if len(frame) < 8 + size:
            raise ComfyProtocolError("binary preview frame shorter than its metadata length")
        try:
            metadata = wire_obj(json.loads(frame[8 : 8 + size]), "preview metadata")
        except ValueError as exc:
            raise ComfyProtocolError("binary preview frame carries invalid JSON metadata") from exc
        declared = metadata.get("image_type")
        mime = declared if isinstance(declared, str) and declared else "application/octet-stream"
        fmt = mime.split("/", 1)[1] if mime.startswith("image/") else "unknown"
        return PreviewImage(fmt, mime, frame[8 + size :], metadata)
    return Unknown(f"binary:{kind}", frame[4:])
