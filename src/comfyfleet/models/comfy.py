"""Typed values of ComfyUI's HTTP API: stats, queue, history, files, userdata, results.

Every `from_wire` parser takes a decoded JSON value from a ComfyUI server and either returns a
typed value or raises `ComfyProtocolError` naming what was wrong; raw dicts of the peer stop
here. Graphs (`prompt`) and `extra_data` stay mappings: they are the caller's own API-format
workflow echoed back, not server structure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfleet.errors import ComfyProtocolError, NodeError, NodeErrorDetail

# --- wire readers: small checked accessors shared by the parsers of this package ---------------


def wire_obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ComfyProtocolError(f"{what}: expected a JSON object, got {_kind(value)}")
    return value


def wire_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ComfyProtocolError(f"{what}: expected a JSON list, got {_kind(value)}")
    return value


def wire_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ComfyProtocolError(f"{what}: expected a string, got {_kind(value)}")
    return value


def wire_opt_str(value: Any, what: str) -> str | None:
    """A string or null; node ids may arrive as numbers from older servers, so those pass too."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return wire_str(value, what)


def wire_num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ComfyProtocolError(f"{what}: expected a number, got {_kind(value)}")
    return value


def wire_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ComfyProtocolError(f"{what}: expected an integer, got {_kind(value)}")
    return value


def wire_str_list(value: Any, what: str) -> tuple[str, ...]:
    return tuple(wire_str(v, f"{what}[{i}]") for i, v in enumerate(wire_list(value, what)))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A file on the server, as /view and /upload name it: folder type, subfolder, name.

    Names come from the server and are untrusted: check them before using them as local paths.
    """

    filename: str
    subfolder: str = ""
    type: str = "output"

    @classmethod
    def from_wire(cls, value: Any, what: str = "file reference") -> FileRef:
        obj = wire_obj(value, what)
        name = obj.get("filename", obj.get("name"))
        return cls(
            filename=wire_str(name, f"{what}.filename"),
            subfolder=wire_opt_str(obj.get("subfolder"), f"{what}.subfolder") or "",
            type=wire_opt_str(obj.get("type"), f"{what}.type") or "output",
        )

    @staticmethod
    def looks_like(value: Any) -> bool:
        """True for a dict shaped like a file reference (`filename` + `type`)."""
        return (
            isinstance(value, dict)
            and isinstance(value.get("filename"), str)
            and isinstance(value.get("type", "output"), str)
        )

    def to_wire(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}

    @property
    def annotated_name(self) -> str:
        """What a LoadImage-style input takes: `subfolder/name`, plus ` [type]` if not input."""
        return self.relpath if self.type == "input" else f"{self.relpath} [{self.type}]"

    @property
    def relpath(self) -> str:
        """`subfolder/filename` (just the name when there is no subfolder)."""
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename


@dataclass(frozen=True)
class DownloadedFile:
    """A file fetched from /view and written to local disk."""

    ref: FileRef
    path: Path
    size: int
    sha256: str
    content_type: str | None = None


# --- server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceStats:
    name: str
    type: str
    index: int | None
    vram_total: int
    vram_free: int
    torch_vram_total: int
    torch_vram_free: int


@dataclass(frozen=True)
class SystemStats:
    """GET /system_stats: versions, RAM and devices of the server."""

    os: str
    comfyui_version: str
    python_version: str
    pytorch_version: str
    ram_total: int
    ram_free: int
    devices: tuple[DeviceStats, ...]
    required_frontend_version: str | None = None
    embedded_python: bool = False
    argv: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, value: Any) -> SystemStats:
        body = wire_obj(value, "system_stats")
        system = wire_obj(body.get("system"), "system_stats.system")
        devices = []
        for i, raw in enumerate(wire_list(body.get("devices", []), "system_stats.devices")):
            dev = wire_obj(raw, f"system_stats.devices[{i}]")
            index = dev.get("index")
            devices.append(
                DeviceStats(
                    name=wire_str(dev.get("name"), "device.name"),
                    type=wire_str(dev.get("type"), "device.type"),
                    index=None if index is None else wire_int(index, "device.index"),
                    vram_total=int(wire_num(dev.get("vram_total", 0), "device.vram_total")),
                    vram_free=int(wire_num(dev.get("vram_free", 0), "device.vram_free")),
                    torch_vram_total=int(wire_num(dev.get("torch_vram_total", 0), "vram")),
                    torch_vram_free=int(wire_num(dev.get("torch_vram_free", 0), "vram")),
                )
            )
        return cls(
            os=wire_str(system.get("os", ""), "system.os"),
            comfyui_version=wire_str(system.get("comfyui_version", ""), "comfyui_version"),
            python_version=wire_str(system.get("python_version", ""), "python_version"),
            pytorch_version=wire_str(system.get("pytorch_version", ""), "pytorch_version"),
            ram_total=int(wire_num(system.get("ram_total", 0), "system.ram_total")),
            ram_free=int(wire_num(system.get("ram_free", 0), "system.ram_free")),
            devices=tuple(devices),
            required_frontend_version=wire_opt_str(
                system.get("required_frontend_version"), "required_frontend_version"
            ),
            embedded_python=bool(system.get("embedded_python", False)),
            argv=wire_str_list(system.get("argv", []), "system.argv"),
        )


# --- queue -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """One queue or history item: `[number, prompt_id, prompt, extra_data, outputs, ...]`."""

    number: float
    prompt_id: str
    prompt: Mapping[str, Any]
    extra_data: Mapping[str, Any]
    outputs: tuple[str, ...]

    @classmethod
    def from_wire(cls, value: Any, what: str = "queue item") -> QueueItem:
        item = wire_list(value, what)
        if len(item) < 5:
            raise ComfyProtocolError(f"{what}: expected at least 5 fields, got {len(item)}")
        return cls(
            number=wire_num(item[0], f"{what}.number"),
            prompt_id=wire_str(item[1], f"{what}.prompt_id"),
            prompt=wire_obj(item[2], f"{what}.prompt"),
            extra_data=wire_obj(item[3], f"{what}.extra_data"),
            outputs=tuple(
                str(v) for v in wire_list(item[4], f"{what}.outputs") if isinstance(v, str | int)
            ),
        )

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class QueueState:
    """GET /queue: the running items and the pending ones (sorted: lowest number runs first)."""

    running: tuple[QueueItem, ...]
    pending: tuple[QueueItem, ...]

    @classmethod
    def from_wire(cls, value: Any) -> QueueState:
        body = wire_obj(value, "queue")
        running = [
            QueueItem.from_wire(v, f"queue_running[{i}]")
            for i, v in enumerate(wire_list(body.get("queue_running", []), "queue_running"))
        ]
        pending = [
            QueueItem.from_wire(v, f"queue_pending[{i}]")
            for i, v in enumerate(wire_list(body.get("queue_pending", []), "queue_pending"))
        ]
        # The server sends its heap array as is; order it the way it will run.
        pending.sort(key=lambda item: item.number)
        return cls(running=tuple(running), pending=tuple(pending))

    def ids(self) -> list[str]:
        return [item.prompt_id for item in (*self.running, *self.pending)]

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.ids()

    def __len__(self) -> int:
        return len(self.running) + len(self.pending)


# --- outputs and history ---------------------------------------------------------------------


@dataclass(frozen=True)
class NodeOutput:
    """The UI output of one node.

    `files` holds every file reference of the output (images first, then other keys such as
    `gifs`, `video`, `audio`), `images` just the `images` key, `text` the `text` key, and
    `other` every remaining key as sent.
    """

    images: tuple[FileRef, ...] = ()
    files: tuple[FileRef, ...] = ()
    text: tuple[str, ...] = ()
    other: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, value: Any, what: str = "node output") -> NodeOutput:
        if value is None:
            return cls()
        body = wire_obj(value, what)
        images: list[FileRef] = []
        others: list[FileRef] = []
        text: list[str] = []
        other: dict[str, Any] = {}
        for key, entry in body.items():
            if key == "images" and isinstance(entry, list):
                images += [FileRef.from_wire(v, f"{what}.images") for v in entry]
            elif key == "text" and isinstance(entry, list):
                text += [v if isinstance(v, str) else str(v) for v in entry]
            elif isinstance(entry, list) and entry and all(FileRef.looks_like(v) for v in entry):
                others += [FileRef.from_wire(v, f"{what}.{key}") for v in entry]
            else:
                other[key] = entry
        return cls(tuple(images), tuple(images + others), tuple(text), other)


def parse_outputs(value: Any, what: str = "outputs") -> dict[str, NodeOutput]:
    body = wire_obj(value if value is not None else {}, what)
    return {str(k): NodeOutput.from_wire(v, f"{what}[{k}]") for k, v in body.items()}


@dataclass(frozen=True)
class HistoryMessage:
    """One `[type, data]` entry of a history entry's `status.messages`."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class HistoryEntry:
    """One finished prompt from /history: its item, outputs, status and messages."""

    prompt_id: str
    item: QueueItem | None
    outputs: Mapping[str, NodeOutput]
    status_str: str
    completed: bool
    messages: tuple[HistoryMessage, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, prompt_id: str, value: Any) -> HistoryEntry:
        what = f"history[{prompt_id}]"
        body = wire_obj(value, what)
        raw_item = body.get("prompt")
        status = wire_obj(body.get("status") or {}, f"{what}.status")
        messages = []
        for i, raw in enumerate(wire_list(status.get("messages", []), f"{what}.messages")):
            pair = wire_list(raw, f"{what}.messages[{i}]")
            if len(pair) != 2:
                raise ComfyProtocolError(f"{what}.messages[{i}]: expected [type, data]")
            messages.append(
                HistoryMessage(
                    type=wire_str(pair[0], f"{what}.messages[{i}][0]"),
                    data=wire_obj(pair[1] or {}, f"{what}.messages[{i}][1]"),
                )
            )
        return cls(
            prompt_id=prompt_id,
            item=None if raw_item is None else QueueItem.from_wire(raw_item, f"{what}.prompt"),
            outputs=parse_outputs(body.get("outputs"), f"{what}.outputs"),
            status_str=wire_opt_str(status.get("status_str"), f"{what}.status_str") or "",
            completed=bool(status.get("completed", False)),
            messages=tuple(messages),
            meta=wire_obj(body.get("meta") or {}, f"{what}.meta"),
        )

    def message(self, type_: str) -> HistoryMessage | None:
        """The last message of that type, if any."""
        for msg in reversed(self.messages):
            if msg.type == type_:
                return msg
        return None

    @property
    def succeeded(self) -> bool:
        return self.status_str == "success"

    @property
    def cached_nodes(self) -> tuple[str, ...]:
        msg = self.message("execution_cached")
        nodes = msg.data.get("nodes", []) if msg else []
        return tuple(str(n) for n in nodes) if isinstance(nodes, list) else ()


def parse_history(value: Any) -> dict[str, HistoryEntry]:
    body = wire_obj(value, "history")
    return {str(pid): HistoryEntry.from_wire(str(pid), entry) for pid, entry in body.items()}


# --- prompts ---------------------------------------------------------------------------------


def parse_node_errors(value: Any, titles: Mapping[str, str] | None = None) -> tuple[NodeError, ...]:
    """Parse ComfyUI's `node_errors` object (from a 400 or a partially accepted 200)."""
    body = wire_obj(value if value is not None else {}, "node_errors")
    out: list[NodeError] = []
    for node_id, raw in body.items():
        entry = wire_obj(raw, f"node_errors[{node_id}]")
        details = []
        for i, err in enumerate(wire_list(entry.get("errors", []), f"node_errors[{node_id}]")):
            e = wire_obj(err, f"node_errors[{node_id}].errors[{i}]")
            raw_extra = e.get("extra_info")
            extra: dict[str, Any] = raw_extra if isinstance(raw_extra, dict) else {}
            input_name = extra.get("input_name")
            allowed: Sequence[Any] | None = None
            config = extra.get("input_config")
            if isinstance(config, list) and config and isinstance(config[0], list):
                allowed = tuple(config[0])
            elif isinstance(config, list) and len(config) > 1 and isinstance(config[1], dict):
                options = config[1].get("options")  # V3 combo: ["COMBO", {"options": [...]}]
                allowed = tuple(options) if isinstance(options, list) else None
            details.append(
                NodeErrorDetail(
                    type=str(e.get("type", "")),
                    message=str(e.get("message", "")),
                    details=str(e.get("details") or ""),
                    input_name=input_name if isinstance(input_name, str) else None,
                    allowed=allowed,
                    extra_info=extra,
                )
            )
        deps = entry.get("dependent_outputs", [])
        out.append(
            NodeError(
                node_id=str(node_id),
                class_type=str(entry.get("class_type", "")),
                errors=tuple(details),
                dependent_outputs=tuple(str(d) for d in deps) if isinstance(deps, list) else (),
                title=(titles or {}).get(str(node_id)),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class PromptAccepted:
    """POST /prompt accepted the prompt (maybe partially: `node_errors` lists dropped branches).

    `existing` is True when the server already knew this prompt_id (queued, running or in
    history) and nothing was posted again.
    """

    prompt_id: str
    number: float | None
    node_errors: tuple[NodeError, ...] = ()
    existing: bool = False


@dataclass(frozen=True)
class PromptResult:
    """A finished prompt: outputs per node plus what the event stream told about the run.

    `node_timings` are seconds per executed node, measured from `executing` events (a node's
    start to the next node's start or the end); cached nodes and nodes that ran while the
    socket was down have none. `from_history` is True when the end was found by polling
    /history (socket down or silent) rather than by the socket's final `executing` frame.
    """

    prompt_id: str
    status: str
    outputs: Mapping[str, NodeOutput]
    messages: tuple[HistoryMessage, ...] = ()
    cached: tuple[str, ...] = ()
    node_timings: Mapping[str, float] = field(default_factory=dict)
    previews: int = 0
    from_history: bool = False

    def files(self) -> list[tuple[str, FileRef]]:
        """Every output file as (node_id, ref), images first within each node."""
        return [(node, ref) for node, out in self.outputs.items() for ref in out.files]


# --- userdata --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserdataEntry:
    """One file under the user's data folder (GET /userdata?full_info=true)."""

    path: str
    size: int
    modified: float | None = None
    created: float | None = None

    @classmethod
    def from_wire(cls, value: Any) -> UserdataEntry:
        obj = wire_obj(value, "userdata entry")
        modified, created = obj.get("modified"), obj.get("created")
        return cls(
            path=wire_str(obj.get("path"), "userdata entry.path"),
            size=int(wire_num(obj.get("size", 0), "userdata entry.size")),
            modified=None if modified is None else wire_num(modified, "userdata.modified"),
            created=None if created is None else wire_num(created, "userdata.created"),
        )
