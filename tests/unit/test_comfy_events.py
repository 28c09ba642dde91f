"""Typed WebSocket events from the frames captured on a real ComfyUI server.

Text frames are replayed as captured; binary frames are summarised in the fixtures, so each is
rebuilt from its header (`first8_hex`), decoded extras and length, then parsed back.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.comfy.watch import PromptWatch
from comfyfleet.errors import ComfyProtocolError
from comfyfleet.models import events as ev
from comfyfleet.util.clock import ManualClock

TEXT_TYPES: dict[str, type[Any]] = {
    "status": ev.Status,
    "execution_start": ev.ExecutionStart,
    "execution_cached": ev.ExecutionCached,
    "executing": ev.Executing,
    "progress": ev.Progress,
    "progress_state": ev.ProgressState,
    "executed": ev.Executed,
    "execution_success": ev.ExecutionSuccess,
    "execution_error": ev.ExecutionError,
    "execution_interrupted": ev.ExecutionInterrupted,
    "feature_flags": ev.FeatureFlags,
}


def _recordings(comfy_fixtures: Path) -> list[Path]:
    found = sorted(comfy_fixtures.glob("ws_*.jsonl"))
    assert len(found) >= 10, "the ws fixtures are missing"
    return found


def _received(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["dir"] == "recv"]


def rebuild_binary(frame: dict[str, Any]) -> bytes:
    """The bytes of a summarised binary frame: header, decoded parts, then padding to length."""
    head = bytes.fromhex(frame["first8_hex"])
    kind = frame["event_type_u32be"]
    if kind == 3:
        node = frame["node_id"].encode()
        body = struct.pack(">II", 3, len(node)) + node + frame["text"].encode()
        assert body[:8] == head
        return body
    if kind == 4:
        meta = json.dumps(frame["metadata"]).encode()
        assert struct.pack(">II", 4, len(meta)) == head, "metadata JSON length differs"
        body = head + meta + bytes.fromhex(frame["image_magic_hex"])
    else:
        body = head + bytes.fromhex(frame["image_magic_hex"])
    return body + b"\0" * (frame["length"] - len(body))


def _check_text(msg: dict[str, Any], event: ev.Event) -> None:
    data = msg["data"]
    assert isinstance(event, TEXT_TYPES[msg["type"]])
    if "prompt_id" in data:
        assert ev.event_prompt_id(event) == data["prompt_id"]
    match event:
        case ev.Status():
            assert event.queue_remaining == data["status"]["exec_info"]["queue_remaining"]
            assert event.sid == data.get("sid")
        case ev.ExecutionCached():
            assert list(event.nodes) == data["nodes"]
        case ev.Executing():
            assert (event.node, event.display_node) == (data["node"], data.get("display_node"))
        case ev.Progress():
            assert (event.value, event.max, event.node) == (
                data["value"],
                data["max"],
                data["node"],
            )
        case ev.ProgressState():
            assert set(event.nodes) == set(data["nodes"])
            for key, node in event.nodes.items():
                assert (node.state, node.value, node.max) == (
                    data["nodes"][key]["state"],
                    data["nodes"][key]["value"],
                    data["nodes"][key]["max"],
                )
        case ev.Executed():
            assert event.node == data["node"]
            images = data["output"].get("images", [])
            assert [r.to_wire() for r in event.output.images] == images
            assert list(event.output.text) == data["output"].get("text", [])
        case ev.ExecutionError():
            assert (event.node_id, event.node_type) == (data["node_id"], data["node_type"])
            assert event.exception_type == data["exception_type"]
            assert event.exception_message == data["exception_message"]
            assert list(event.traceback) == data["traceback"]
            assert dict(event.current_inputs) == data["current_inputs"]
        case ev.ExecutionInterrupted():
            assert (event.node_id, event.node_type) == (data["node_id"], data["node_type"])
            assert list(event.executed) == data["executed"]
        case ev.FeatureFlags():
            assert event.supports_preview_metadata is True
            assert event.max_upload_size == data["max_upload_size"]


def _check_binary(frame: dict[str, Any], event: ev.Event) -> None:
    kind = frame["event_type_u32be"]
    if kind == 3:
        assert event == ev.ProgressText(frame["node_id"], frame["text"])
        return
    assert isinstance(event, ev.PreviewImage)
    assert event.data.startswith(bytes.fromhex(frame["image_magic_hex"]))
    if kind == 1:
        assert (event.format, event.mime, event.metadata) == ("jpeg", "image/jpeg", None)
        assert len(event.data) == frame["length"] - 8
    else:
        assert event.metadata == frame["metadata"]
        assert event.mime == frame["metadata"]["image_type"]
        assert event.prompt_id == frame["metadata"]["prompt_id"]
        assert event.node_id == frame["metadata"]["node_id"]


def test_every_captured_frame_parses(comfy_fixtures: Path) -> None:
    seen: set[str] = set()
    for path in _recordings(comfy_fixtures):
        for frame in _received(path):
            if frame["kind"] == "text":
                event = ev.parse_event(json.dumps(frame["msg"]))
                _check_text(frame["msg"], event)
                seen.add(frame["msg"]["type"])
            else:
                event = ev.parse_event(rebuild_binary(frame))
                _check_binary(frame, event)
                seen.add(f"binary:{frame['event_type_u32be']}")
    # Every kind of frame the server sent in the captures was met (and none fell to Unknown).
    assert seen == set(TEXT_TYPES) | {"binary:1", "binary:3", "binary:4"}


def test_unknown_and_broken_frames() -> None:
    assert ev.parse_event('{"type": "crystools.monitor", "data": {"cpu": 3}}') == ev.Unknown(
        "crystools.monitor", {"cpu": 3}
    )
    unknown = ev.parse_event(struct.pack(">I", 2) + b"raw")
    assert isinstance(unknown, ev.Unknown) and unknown.type == "binary:2"
    for bad in ("not json", "[1, 2]", '{"data": {}}', '{"type": "executing", "data": 5}'):
        with pytest.raises(ComfyProtocolError):
            ev.parse_event(bad)
    with pytest.raises(ComfyProtocolError):
        ev.parse_event(b"\x00\x00")
    with pytest.raises(ComfyProtocolError, match="metadata length"):
        ev.parse_event(struct.pack(">II", 4, 500) + b"{}")
    with pytest.raises(ComfyProtocolError, match="queue_remaining"):
        ev.parse_event(
            '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": "x"}}}}'
        )


def test_png_preview_without_metadata() -> None:
    event = ev.parse_event(struct.pack(">II", 1, 2) + b"\x89PNG")
    assert isinstance(event, ev.PreviewImage)
    assert (event.format, event.mime, event.data, event.prompt_id) == (
        "png",
        "image/png",
        b"\x89PNG",
        None,
    )


def _replay(path: Path, prompt_id: str | None = None) -> tuple[PromptWatch, list[ev.Event]]:
    """Feed a recording to a PromptWatch, advancing a manual clock by the capture's times."""
    frames = _received(path)
    if prompt_id is None:
        prompt_id = next(
            f["msg"]["data"]["prompt_id"]
            for f in frames
            if f["kind"] == "text" and f["msg"]["type"] == "execution_start"
        )
    clock = ManualClock()
    watch = PromptWatch(prompt_id, clock)
    relevant = []
    t0 = 0.0
    for frame in frames:
        clock.advance(frame["t"] - t0)
        t0 = frame["t"]
        raw = json.dumps(frame["msg"]) if frame["kind"] == "text" else rebuild_binary(frame)
        event = ev.parse_event(raw)
        if watch.feed(event):
            relevant.append(event)
    return watch, relevant


def test_watch_success_timings_and_outputs(comfy_fixtures: Path) -> None:
    watch, _ = _replay(comfy_fixtures / "ws_success.jsonl")
    assert watch.finished and watch.error is None and watch.interrupted is None
    assert watch.cached == ()
    # Execution order 1,5,6,7,2,3,4; node 3 (a big blur) ran from t=0.791 to t=5.068.
    assert list(watch.timings) == ["1", "5", "6", "7", "2", "3", "4"]
    assert watch.timings["3"] == pytest.approx(5.068 - 0.791, abs=1e-6)
    assert watch.timings["4"] == pytest.approx(5.511 - 5.068, abs=1e-6)
    assert {n: [r.filename for r in o.files] for n, o in watch.outputs.items()} == {
        "5": ["ComfyUI_temp_tksvp_00001_.png"],
        "7": [],
        "4": ["run_00001_.png"],
    }
    assert watch.outputs["7"].text == ("hello world",)
    result = watch.result(None, from_history=False)
    assert result.status == "success" and not result.from_history
    assert [ref.relpath for _, ref in result.files()] == [
        "ComfyUI_temp_tksvp_00001_.png",
        "fixture/run_00001_.png",
    ]


def test_watch_fully_cached_rerun(comfy_fixtures: Path) -> None:
    watch, _ = _replay(comfy_fixtures / "ws_cached_full.jsonl")
    assert watch.finished
    assert len(watch.cached) >= 2 and watch.timings == {}
    assert watch.outputs, "cached output nodes re-send their executed frames"


def test_watch_error_and_interrupt(comfy_fixtures: Path) -> None:
    watch, _ = _replay(comfy_fixtures / "ws_execution_error.jsonl")
    assert watch.error is not None and watch.error.exception_type == "PIL.UnidentifiedImageError"
    watch, _ = _replay(comfy_fixtures / "ws_interrupted.jsonl")
    assert watch.interrupted is not None and watch.interrupted.node_id == "3"


def test_watch_counts_previews_of_its_prompt_only(comfy_fixtures: Path) -> None:
    watch, relevant = _replay(
        comfy_fixtures / "ws_progress_and_previews_preview_with_metadata.jsonl"
    )
    assert watch.previews == 4 and watch.finished
    assert any(isinstance(e, ev.ProgressText) for e in relevant)
    legacy, _ = _replay(comfy_fixtures / "ws_progress_and_previews_legacy_preview.jsonl")
    assert legacy.previews == 4
    other, relevant = _replay(
        comfy_fixtures / "ws_progress_and_previews_preview_with_metadata.jsonl", "another-prompt"
    )
    assert other.previews == 0 and not other.started and not other.finished
    assert not any(ev.event_prompt_id(e) for e in relevant)
