"""WebSocket side of the sandbox: sockets by client id, one ordered publisher, binary frames.

As in ComfyUI's `PromptServer`, every event goes through one queue (`send_sync`) and one
publisher task, so frames keep the order the executor produced them in. A `sid` of None
broadcasts to every socket. Binary frames are a 4-byte big-endian event type then a payload:
1 preview image (u32 format, 1 = JPEG, 2 = PNG, then bytes), 3 progress text (u32 length of
the node id, the id, the text), 4 preview with metadata (u32 JSON length, JSON, image bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import uuid
from collections.abc import Callable
from io import BytesIO
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image, ImageOps

from comfyfleet.sandbox.comfy.knobs import Knobs

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}

#: (format "JPEG"|"PNG", image, max size or None) as ComfyUI passes previews around.
Preview = tuple[str, Image.Image, int | None]

log = logging.getLogger(__name__)


class Hub:
    """Open sockets, their negotiated features, and the ordered publisher."""

    def __init__(self, knobs: Knobs, queue_info: Callable[[], dict[str, Any]]) -> None:
        self._knobs = knobs
        self._queue_info = queue_info
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._requests: dict[str, web.Request] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self._messages: asyncio.Queue[tuple[Any, Any, str | None]] = asyncio.Queue()
        # What the executor is doing, for a client that reconnects mid-prompt.
        self.client_id: str | None = None
        self.last_node_id: str | None = None

    # --- sending ---------------------------------------------------------------------------

    def send_sync(self, event: Any, data: Any, sid: str | None = None) -> None:
        """Queue one event for the publisher (to `sid`, or to everyone when None)."""
        self._messages.put_nowait((event, data, sid))

    def supports_metadata(self, sid: str | None) -> bool:
        if sid is None:
            return False
        flags = self.metadata.get(sid, {}).get("feature_flags", {})
        return flags.get("supports_preview_metadata", False) is True

    async def publish_loop(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            await self._send(event, data, sid)

    async def _send(self, event: Any, data: Any, sid: str | None) -> None:
        if event == UNENCODED_PREVIEW_IMAGE:
            await self._send_frame(_encode_preview(data), sid)
        elif event == PREVIEW_IMAGE_WITH_METADATA:
            preview, metadata = data
            await self._send_frame(_encode_preview_with_metadata(preview, metadata), sid)
        elif isinstance(data, bytes | bytearray):
            await self._send_frame(struct.pack(">I", event) + bytes(data), sid)
        else:
            await self._send_frame(json.dumps({"type": event, "data": data}), sid)

    async def _send_frame(self, frame: str | bytes, sid: str | None) -> None:
        if sid is None:
            targets = list(self.sockets.values())
        elif sid in self.sockets:
            targets = [self.sockets[sid]]
        else:
            return
        for ws in targets:
            try:
                if isinstance(frame, str):
                    await ws.send_str(frame)
                else:
                    await ws.send_bytes(frame)
            except (ConnectionError, RuntimeError) as err:
                log.warning("send error: %s", err)
                continue
            if self._knobs.count_ws_frame():
                self.abort_all()

    # --- sockets ---------------------------------------------------------------------------

    def abort_all(self) -> None:
        """Kill every socket's transport: no close frame, like a dropped network path."""
        for request in list(self._requests.values()):
            transport = request.transport
            if transport is not None:
                transport.abort()

    async def close_all(self) -> None:
        for ws in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"Server shutdown")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """GET /ws?clientId=ID: status first, then events; optional feature_flags handshake."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self._requests[sid] = request
        self.metadata[sid] = {"feature_flags": {}}
        try:
            await self._send_frame(
                json.dumps({"type": "status", "data": {"status": self._queue_info(), "sid": sid}}),
                sid,
            )
            if self.client_id == sid and self.last_node_id is not None:
                await self._send_frame(
                    json.dumps({"type": "executing", "data": {"node": self.last_node_id}}), sid
                )
            first_message = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    log.warning("Invalid JSON received from client %s: %s", sid, msg.data)
                    continue
                if not isinstance(data, dict):
                    continue  # ComfyUI fails on it (and logs) before leaving the first message
                if first_message and data.get("type") == "feature_flags":
                    self.metadata[sid]["feature_flags"] = data.get("data", {})
                    await self._send_frame(
                        json.dumps({"type": "feature_flags", "data": dict(SERVER_FEATURES)}), sid
                    )
                first_message = False
        finally:
            # ComfyUI forgets the id unconditionally, even if a newer socket took it over.
            self.sockets.pop(sid, None)
            self._requests.pop(sid, None)
            self.metadata.pop(sid, None)
        return ws


def _image_bytes(preview: Preview) -> tuple[str, bytes]:
    image_type, image, max_size = preview
    if max_size is not None:
        image = ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR)
    buf = BytesIO()
    image.save(buf, format=image_type, quality=95, compress_level=1)
    return image_type, buf.getvalue()


def _encode_preview(preview: Preview) -> bytes:
    image_type, raw = _image_bytes(preview)
    fmt = 2 if image_type == "PNG" else 1
    return struct.pack(">II", PREVIEW_IMAGE, fmt) + raw


def _encode_preview_with_metadata(preview: Preview, metadata: dict[str, Any]) -> bytes:
    image_type, raw = _image_bytes(preview)
    meta = {**metadata, "image_type": "image/png" if image_type == "PNG" else "image/jpeg"}
    blob = json.dumps(meta).encode("utf-8")
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(blob)) + blob + raw


def encode_text(node_id: str, text: str) -> bytes:
    """Payload of a TEXT (3) frame, without the event type."""
    node = str(node_id).encode("utf-8")
    return struct.pack(">I", len(node)) + node + text.encode("utf-8")
