"""The sandbox ComfyUI against the WebSocket recordings (`ws_*.jsonl`) and the run fixtures.

Each test replays a recording's `note` actions (the HTTP calls of the capture) and compares
the frames the sandbox sends with the recorded ones: the sequence of message types (binary
frames by event type), the key set of each message's data, and the node ids in order
(`executing`, `executed`, the nodes and states of each `progress_state`, `execution_cached`).
Run-specific values are not compared: prompt ids, timestamps, temp file names, and the order
of `executed` lists in errors (ComfyUI builds them from a set). History, queue and /view
answers after the runs are compared with their fixtures the same way.

Timing is driven with the knobs where the capture relied on a slow node (interrupts, queue
operations): a node made slow in simulated time is still running when the action arrives.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfyfleet.sandbox.comfy import Knobs, SandboxComfy

pytestmark = pytest.mark.timeout(90)

CLIENT = "c1d66e84-5ae2-4b6e-9eb4-c28768cd2d75"


def load(fixtures: Path, name: str) -> Any:
    if name.endswith(".jsonl"):
        return [
            json.loads(line) for line in (fixtures / name).read_text().splitlines() if line.strip()
        ]
    return json.loads((fixtures / name).read_text())


def history_prompts(fixtures: Path) -> dict[int, dict[str, Any]]:
    """Prompt graphs of the capture's runs by queue number (from GET /history)."""
    body = load(fixtures, "GET_history_all.json")["response"]["body"]
    return {entry["prompt"][0]: entry["prompt"][2] for entry in body.values()}


# --- frame summaries ---------------------------------------------------------------------


def summary_of_text(msg: dict[str, Any]) -> tuple[Any, ...]:
    kind, data = msg["type"], msg["data"]
    detail: Any = None
    if kind in ("executing", "executed"):
        detail = data.get("node")
    elif kind == "progress_state":
        detail = tuple((nid, st["state"]) for nid, st in data["nodes"].items())
    elif kind == "execution_cached":
        detail = tuple(data["nodes"])
    elif kind == "status":
        detail = data["status"]["exec_info"]["queue_remaining"]
    elif kind in ("execution_error", "execution_interrupted"):
        detail = (data["node_id"], data["node_type"], tuple(sorted(data["executed"])))
    elif kind == "progress":
        detail = (data["value"], data["max"], data["node"])
    return (kind, tuple(sorted(data)), detail)


def summary_of_recording(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in events:
        if event["dir"] != "recv":
            continue
        if event["kind"] == "text":
            out.append(summary_of_text(event["msg"]))
        else:
            out.append(("binary", event["event_type_u32be"], _binary_detail_recorded(event)))
    return out


def _binary_detail_recorded(event: dict[str, Any]) -> Any:
    kind = event["event_type_u32be"]
    if kind == 1:
        return event["image_format_u32be"]
    if kind == 3:
        return (event["node_id"], event["text"])
    if kind == 4:
        return (tuple(sorted(event["metadata"])), event["metadata"]["image_type"])
    return None


def summary_of_binary(raw: bytes) -> tuple[Any, ...]:
    (kind,) = struct.unpack(">I", raw[:4])
    detail: Any = None
    if kind == 1:
        detail = struct.unpack(">I", raw[4:8])[0]
        assert raw[8:10] == b"\xff\xd8"
    elif kind == 3:
        (size,) = struct.unpack(">I", raw[4:8])
        detail = (raw[8 : 8 + size].decode(), raw[8 + size :].decode())
    elif kind == 4:
        (size,) = struct.unpack(">I", raw[4:8])
        meta = json.loads(raw[8 : 8 + size])
        detail = (tuple(sorted(meta)), meta["image_type"])
        assert raw[8 + size : 10 + size] == b"\xff\xd8"
    return ("binary", kind, detail)


def recorded_until_end(events: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Recorded frames from `start` to the first `executing {node: null}` (inclusive)."""
    out = []
    for event in events[start:]:
        out.append(event)
        msg = event.get("msg") or {}
        if msg.get("type") == "executing" and msg["data"]["node"] is None:
            break
    return out


def after_note(events: list[dict[str, Any]], index: int = 0) -> int:
    notes = [i for i, e in enumerate(events) if e["dir"] == "note"]
    return notes[index] + 1


# --- a socket that records -------------------------------------------------------------------


class Socket:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[tuple[Any, ...]] = []
        self.messages: list[dict[str, Any]] = []

    async def next(self, timeout: float = 30) -> tuple[Any, ...]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            self.messages.append(data)
            frame = summary_of_text(data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            frame = summary_of_binary(msg.data)
        else:
            raise AssertionError(f"socket ended: {msg.type}")
        self.frames.append(frame)
        return frame

    async def until_done(self, timeout: float = 60) -> list[tuple[Any, ...]]:
        start = len(self.frames)
        while True:
            frame = await self.next(timeout)
            if frame[0] == "executing" and frame[2] is None:
                return self.frames[start:]

    async def until(self, kind: str, detail: Any = None) -> None:
        while True:
            frame = await self.next()
            if frame[0] == kind and (detail is None or frame[2] == detail):
                return

    def since(self, index: int) -> list[tuple[Any, ...]]:
        return self.frames[index:]


class World:
    def __init__(
        self, server: SandboxComfy, session: aiohttp.ClientSession, fixtures: Path
    ) -> None:
        self.server, self.session, self.fixtures = server, session, fixtures

    async def socket(self, client_id: str | None = CLIENT, flags: bool = False) -> Socket:
        query = f"?clientId={client_id}" if client_id else ""
        ws = await self.session.ws_connect(f"{self.server.url}/ws{query}")
        sock = Socket(ws)
        if flags:
            await ws.send_str(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        await sock.next()
        if flags:
            await sock.next()
        return sock

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.session.post(self.server.url + path, json=body) as resp:
            text = await resp.text()
            assert resp.status == 200, text
            return json.loads(text) if text else None

    async def get(self, path: str) -> Any:
        async with self.session.get(self.server.url + path) as resp:
            assert resp.status == 200
            return await resp.json()

    async def queue(self, prompt: dict[str, Any], client: str | None = CLIENT, **extra: Any) -> str:
        body: dict[str, Any] = {"prompt": prompt, **extra}
        if client is not None:
            body["client_id"] = client
        answer = await self.post("/prompt", body)
        prompt_id: str = answer["prompt_id"]
        return prompt_id

    async def upload(self, name: str, data: bytes, subdir: str = "") -> None:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name)
        form.add_field("overwrite", "true")
        if subdir:
            form.add_field("subfolder", subdir)
        async with self.session.post(self.server.url + "/upload/image", data=form) as resp:
            assert resp.status == 200


@pytest.fixture
async def world(comfy_sandbox: SandboxComfy, comfy_fixtures: Path) -> AsyncIterator[World]:
    async with aiohttp.ClientSession() as session:
        yield World(comfy_sandbox, session, comfy_fixtures)


def success_body(fixtures: Path) -> dict[str, Any]:
    body: dict[str, Any] = load(fixtures, "POST_prompt_valid.json")["request"]["json"]
    return body


def assert_same_run(got: list[tuple[Any, ...]], recorded: list[dict[str, Any]]) -> None:
    assert got == summary_of_recording(recorded)


def node_blocks(frames: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """A run as head, sorted per-node blocks, tail: for runs whose output order is a set's.

    ComfyUI takes its outputs to execute from a Python set, so when several outputs are ready
    at once (all cached) their order differs from run to run; each node's own frames do not.
    """
    cut = next(i for i, f in enumerate(frames) if f[0] == "execution_cached") + 1
    end = next(i for i, f in enumerate(frames) if f[0] == "execution_success")
    blocks: list[list[Any]] = []
    states: dict[str, str] = {}
    current = None
    for frame in frames[cut:end]:
        if frame[0] == "progress_state":
            changed = [(n, st) for n, st in frame[2] if states.get(n) != st]
            states.update(dict(frame[2]))
            (node, state) = changed[0]
            item: Any = ("progress_state", state)
        else:
            node, item = frame[2], frame[:2]
        if node != current:
            blocks.append([node])
            current = node
        blocks[-1].append(item)
    return (tuple(frames[:cut]), sorted(map(tuple, blocks)), tuple(frames[end:]))


def strip_history(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry without run-specific values (ids, timestamps, temp names, tracebacks)."""
    outputs = json.loads(
        json.dumps(entry["outputs"])
        .replace("ComfyUI_temp_", "ComfyUI_temp_#")
        .replace("_00001_", "_N_")
    )
    for node in outputs.values():
        for image in node.get("images", []):
            if image["filename"].startswith("ComfyUI_temp_#"):
                image["filename"] = "ComfyUI_temp_#"
    messages = [
        [
            kind,
            sorted(set(data) - {"timestamp", "prompt_id"}),
            data.get("node_id"),
            sorted(data.get("nodes", [])),
        ]
        for kind, data in entry["status"]["messages"]
    ]
    return {
        "prompt": [entry["prompt"][2], sorted(entry["prompt"][4])],
        "extra_data": sorted(entry["prompt"][3]),
        "outputs": outputs,
        "status": [entry["status"]["status_str"], entry["status"]["completed"], messages],
        "meta": entry["meta"],
    }


# --- the recordings ----------------------------------------------------------------------------


async def test_success_then_history_queue_and_view(world: World, comfy_fixtures: Path) -> None:
    events = load(comfy_fixtures, "ws_success.jsonl")
    sock = await world.socket()
    assert sock.frames == [summary_of_recording(events[1:2])[0]]
    prompt_id = await world.queue(
        **{k: v for k, v in success_body(comfy_fixtures).items() if k != "client_id"}
    )
    assert_same_run(await sock.until_done(), recorded_until_end(events, after_note(events)))

    recorded = load(comfy_fixtures, "GET_history_prompt_id_success.json")["response"]["body"]
    got = await world.get(f"/history/{prompt_id}")
    assert list(got) == [prompt_id]
    assert strip_history(got[prompt_id]) == strip_history(next(iter(recorded.values())))
    assert got[prompt_id]["prompt"][0] == 0
    assert list(got[prompt_id]) == ["prompt", "outputs", "status", "meta"]

    image = got[prompt_id]["outputs"]["4"]["images"][0]
    assert image == {"filename": "run_00001_.png", "subfolder": "fixture", "type": "output"}
    async with world.session.get(
        f"{world.server.url}/view?filename=run_00001_.png&subfolder=fixture&type=output"
    ) as r:
        saved = await r.read()
        want = load(comfy_fixtures, "GET_view_output_saveimage.json")["response"]["headers"]
        assert r.status == 200 and r.headers["Content-Type"] == want["Content-Type"]
        assert r.headers["Content-Disposition"] == want["Content-Disposition"]
    with Image.open(io.BytesIO(saved)) as img:
        assert img.size == (2048, 2048)
        assert json.loads(img.text["prompt"]) == success_body(comfy_fixtures)["prompt"]
        assert json.loads(img.text["workflow"]) == {"note": "UI workflow JSON would go here"}
        assert img.getpixel((1024, 1024)) == (255 - 0x33, 255 - 0x66, 255 - 0x99)
    temp = got[prompt_id]["outputs"]["5"]["images"][0]["filename"]
    async with world.session.get(
        f"{world.server.url}/view?filename={temp}&subfolder=&type=temp"
    ) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    for name, ctype in (
        ("GET_view_preview_jpeg.json", "image/jpeg"),
        ("GET_view_preview_webp.json", "image/webp"),
    ):
        path = load(comfy_fixtures, name)["request"]["path"]
        async with world.session.get(world.server.url + path) as r:
            assert r.status == 200 and r.headers["Content-Type"] == ctype
            assert "Cache-Control" not in r.headers

    full = await world.get("/history")
    assert list(full) == [prompt_id]
    assert await world.get("/history?max_items=1&offset=0") == full
    assert (
        await world.get("/queue") == load(comfy_fixtures, "GET_queue_idle.json")["response"]["body"]
    )


async def test_cached_full_and_partial(world: World, comfy_fixtures: Path) -> None:
    sock = await world.socket()
    body = success_body(comfy_fixtures)
    await world.queue(body["prompt"], extra_data=body["extra_data"])
    await sock.until_done()
    events = load(comfy_fixtures, "ws_cached_full.jsonl")
    prompt_id = await world.queue(body["prompt"], extra_data=body["extra_data"])
    got = await sock.until_done()
    assert node_blocks(got) == node_blocks(
        summary_of_recording(recorded_until_end(events, after_note(events)))
    )
    recorded = load(comfy_fixtures, "GET_history_prompt_id_cached.json")["response"]["body"]
    got = (await world.get(f"/history/{prompt_id}"))[prompt_id]
    assert strip_history(got) == strip_history(next(iter(recorded.values())))

    events = load(comfy_fixtures, "ws_cached_partial.jsonl")
    changed = json.loads(json.dumps(body["prompt"]))
    changed["4"]["inputs"]["filename_prefix"] = "fixture/run2"
    await world.queue(changed)
    got = await sock.until_done()
    assert node_blocks(got) == node_blocks(
        summary_of_recording(recorded_until_end(events, after_note(events)))
    )
    saved = next(
        m for m in sock.messages[::-1] if m["type"] == "executed" and m["data"]["node"] == "4"
    )
    assert saved["data"]["output"]["images"][0]["filename"] == "run2_00001_.png"


async def test_rerun_after_free_memory(world: World, comfy_fixtures: Path) -> None:
    sock = await world.socket()
    body = success_body(comfy_fixtures)
    await world.queue(body["prompt"])
    await sock.until_done()
    assert await world.post("/free", {"unload_models": True, "free_memory": True}) is None
    await asyncio.sleep(0.2)
    events = load(comfy_fixtures, "ws_rerun_after_free_memory.jsonl")
    await world.queue(body["prompt"])
    assert_same_run(await sock.until_done(), recorded_until_end(events))
    saved = next(
        m for m in sock.messages[::-1] if m["type"] == "executed" and m["data"]["node"] == "4"
    )
    assert saved["data"]["output"]["images"][0]["filename"] == "run_00002_.png"


async def test_partial_execution_targets(world: World, comfy_fixtures: Path) -> None:
    sock = await world.socket()
    await world.queue(success_body(comfy_fixtures)["prompt"])
    await sock.until_done()
    events = load(comfy_fixtures, "ws_partial_execution_targets.jsonl")
    request = load(comfy_fixtures, "POST_prompt_client_prompt_id_and_partial_targets.json")[
        "request"
    ]["json"]
    prompt_id = await world.queue(
        request["prompt"],
        prompt_id=request["prompt_id"],
        partial_execution_targets=request["partial_execution_targets"],
    )
    assert prompt_id == "my-own-prompt-id-0001"
    assert_same_run(await sock.until_done(), recorded_until_end(events, after_note(events)))
    recorded = load(comfy_fixtures, "GET_history_prompt_id_partial_targets.json")["response"][
        "body"
    ]
    got = (await world.get(f"/history/{prompt_id}"))[prompt_id]
    assert strip_history(got) == strip_history(recorded[prompt_id])


async def test_interrupted_between_nodes(world: World, comfy_fixtures: Path) -> None:
    world.server.knobs.set_duration("ImageBlur", 15.0)
    sock = await world.socket()
    events = load(comfy_fixtures, "ws_interrupted.jsonl")
    start = len(sock.frames)
    prompt_id = await world.queue(history_prompts(comfy_fixtures)[4])
    await sock.until("executing", "2")
    assert await world.post("/interrupt", {}) is None
    await sock.until_done()
    assert_same_run(sock.since(start), recorded_until_end(events, after_note(events)))
    recorded = load(comfy_fixtures, "GET_history_prompt_id_interrupted.json")["response"]["body"]
    got = (await world.get(f"/history/{prompt_id}"))[prompt_id]
    assert strip_history(got) == strip_history(next(iter(recorded.values())))


@pytest.mark.parametrize(
    ("recording", "history"),
    [
        ("ws_execution_error.jsonl", "GET_history_prompt_id_execution_error.json"),
        ("ws_execution_error_alloc.jsonl", None),
        (
            "ws_execution_error_broken_checkpoint.jsonl",
            "extra_GET_history_prompt_id_broken_checkpoint.json",
        ),
    ],
)
async def test_execution_errors(
    world: World, comfy_fixtures: Path, recording: str, history: str | None
) -> None:
    root = world.server.root
    await world.upload("corrupt.png", b"this is not a png")
    (root / "models" / "checkpoints" / "broken_model.safetensors").write_bytes(
        bytes(range(256)) * 8
    )
    prompts = history_prompts(comfy_fixtures)
    broken = load(comfy_fixtures, "extra_POST_prompt_broken_checkpoint_accepted.json")["request"][
        "json"
    ]["prompt"]
    prompt = {
        "ws_execution_error.jsonl": prompts[5],
        "ws_execution_error_alloc.jsonl": prompts[6],
    }.get(recording, broken)
    sock = await world.socket()
    events = load(comfy_fixtures, recording)
    start = len(sock.frames)
    prompt_id = await world.queue(prompt)
    await sock.until_done()
    first = next(
        i
        for i, e in enumerate(events)
        if e.get("msg", {}).get("type") == "status" and "sid" not in e["msg"]["data"]
    )
    assert_same_run(sock.since(start), recorded_until_end(events, first))

    error = next(m for m in sock.messages if m["type"] == "execution_error")["data"]
    want = next(
        e["msg"]["data"] for e in events if e.get("msg", {}).get("type") == "execution_error"
    )
    assert set(error) == set(want)
    assert error["exception_type"] == want["exception_type"]
    assert error["exception_message"] == want["exception_message"].replace(
        "<COMFYUI>", str(root.resolve())
    )
    assert sorted(error["current_outputs"]) == sorted(want["current_outputs"])
    assert error["current_inputs"] == want["current_inputs"]
    assert error["traceback"][0].startswith(
        f'  File "{root.resolve()}/execution.py", line 496, in execute'
    )
    if history is not None:
        recorded = load(comfy_fixtures, history)["response"]["body"]
        got = (await world.get(f"/history/{prompt_id}"))[prompt_id]
        assert strip_history(got) == strip_history(next(iter(recorded.values())))


async def test_queue_operations(world: World, comfy_fixtures: Path) -> None:
    world.server.knobs.set_duration("ImageBlur", 15.0)
    events = load(comfy_fixtures, "ws_queue_operations.jsonl")
    pending = load(comfy_fixtures, "GET_queue_running_and_pending.json")["response"]["body"][
        "queue_pending"
    ]
    labels = {
        v: k for k, v in load(comfy_fixtures, "GET_history_after_queue_ops_ids.json")["ids"].items()
    }
    graph = {labels[item[1]]: item[2] for item in pending}
    sock = await world.socket()
    start = len(sock.frames)
    ids = {"A_running": await world.queue(history_prompts(comfy_fixtures)[7])}
    await sock.until("executing", "2")
    ids["B"] = await world.queue(graph["B"])
    ids["C"] = await world.queue(graph["C"])
    ids["D_front"] = await world.queue(graph["D_front"], front=True)
    ids["E_number_0.5"] = await world.queue(graph["E_number_0.5"], number=0.5)
    ids["F_no_client"] = await world.queue(graph["F_no_client"], client=None)
    queue = await world.get("/queue")
    by_id = {v: k for k, v in ids.items()}
    assert [by_id[i[1]] for i in queue["queue_pending"]] == [labels[i[1]] for i in pending]
    assert [by_id[i[1]] for i in queue["queue_running"]] == ["A_running"]
    assert await world.get("/prompt") == {"exec_info": {"queue_remaining": 6}}
    assert await world.post("/queue", {"delete": [ids["C"]]}) is None
    after = load(comfy_fixtures, "GET_queue_after_delete.json")["response"]["body"]["queue_pending"]
    assert [by_id[i[1]] for i in (await world.get("/queue"))["queue_pending"]] == [
        labels[i[1]] for i in after
    ]
    assert await world.post("/queue", {"clear": True}) is None
    assert (await world.get("/queue"))["queue_pending"] == []
    assert await world.post("/interrupt", {"prompt_id": ids["B"]}) is None
    await asyncio.sleep(0.05)
    assert await world.post("/interrupt", {"prompt_id": ids["A_running"]}) is None
    await sock.until_done()
    assert_same_run(sock.since(start), recorded_until_end(events))
    history = await world.get("/history")
    has = load(comfy_fixtures, "GET_history_after_queue_ops_ids.json")["history_has"]
    assert {label: ids[label] in history for label in ids} == has


async def test_connect_without_client_id_and_feature_flags(
    world: World, comfy_fixtures: Path
) -> None:
    anonymous = await world.socket(client_id=None)
    recorded = load(comfy_fixtures, "ws_connect_without_clientId.jsonl")
    assert anonymous.frames == summary_of_recording(recorded)
    sid = anonymous.messages[0]["data"]["sid"]
    assert len(sid) == 32 and int(sid, 16) >= 0
    flagged = await world.socket(client_id="42849bfa-df81-4154-8571-5572867543a3", flags=True)
    recorded = load(comfy_fixtures, "ws_feature_flags_handshake.jsonl")
    assert flagged.frames == summary_of_recording(recorded)
    assert flagged.messages[1] == recorded[-2]["msg"]


async def test_observer_and_prompt_without_client(world: World, comfy_fixtures: Path) -> None:
    observer = await world.socket(client_id="observer-d5765619")
    client = await world.socket()
    events = load(comfy_fixtures, "ws_observer_other_client.jsonl")
    await world.queue(history_prompts(comfy_fixtures)[32])
    await client.until_done()
    await asyncio.sleep(0.1)
    while len(observer.frames) < 4:
        await observer.next()
    assert [f[0] for f in observer.frames] == ["status"] * 4  # connect, put, get, done
    start = len(observer.frames)
    small = history_prompts(comfy_fixtures)[12]
    prompt_id = await world.queue(small, client=None)
    while True:
        frame = await observer.next()
        if frame[0] == "status" and frame[2] == 0:
            break
    note = next(i for i, e in enumerate(events) if e["dir"] == "note")
    recorded = []
    for event in events[note + 1 :]:
        recorded.append(event)
        if (
            event.get("msg", {}).get("type") == "status"
            and event["msg"]["data"]["status"]["exec_info"]["queue_remaining"] == 0
        ):
            break
    assert observer.since(start) == summary_of_recording(recorded)
    history = (await world.get(f"/history/{prompt_id}"))[prompt_id]
    assert history["prompt"][3] == {} and history["status"]["status_str"] == "success"


@pytest.mark.parametrize(
    ("recording", "flags"),
    [
        ("ws_progress_and_previews_legacy_preview.jsonl", False),
        ("ws_progress_and_previews_preview_with_metadata.jsonl", True),
    ],
)
async def test_progress_previews_and_text(
    tmp_path: Path, comfy_fixtures: Path, recording: str, flags: bool
) -> None:
    knobs = Knobs(probe_node=True)
    async with (
        SandboxComfy(tmp_path / "root", speed=50, knobs=knobs) as server,
        aiohttp.ClientSession() as session,
    ):
        world = World(server, session, comfy_fixtures)
        events = load(comfy_fixtures, recording)
        sock = await world.socket(client_id="probe-client", flags=flags)
        prompt = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 255},
            },
            "2": {"class_type": "ProgressProbe", "inputs": {"image": ["1", 0], "steps": 4}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        }
        start = len(sock.frames)
        await world.queue(prompt, client="probe-client")
        await sock.until_done()
        assert_same_run(sock.since(start), recorded_until_end(events, after_note(events)))
