"""The sandbox ComfyUI's test knobs and lifecycle, seen from a raw aiohttp client on loopback."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfyfleet.sandbox.comfy import Knobs, SandboxComfy

pytestmark = pytest.mark.timeout(60)


def chain(color: int = 7, size: int = 64) -> dict[str, Any]:
    """EmptyImage -> three blurs -> PreviewImage (the capture's long workflow, small)."""
    blur = {"blur_radius": 3, "sigma": 1.0}
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], **blur}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], **blur}},
        "4": {"class_type": "ImageBlur", "inputs": {"image": ["3", 0], **blur}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }


class Client:
    def __init__(self, server: SandboxComfy, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    @property
    def url(self) -> str:
        return self.server.url

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.post(self.url + path, json=body) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def queue(self, prompt: dict[str, Any], client_id: str | None = "tester") -> str:
        body: dict[str, Any] = {"prompt": prompt}
        if client_id:
            body["client_id"] = client_id
        status, answer = await self.post("/prompt", body)
        assert status == 200, answer
        prompt_id: str = answer["prompt_id"]
        return prompt_id

    async def socket(self, client_id: str = "tester") -> aiohttp.ClientWebSocketResponse:
        ws = await self.session.ws_connect(f"{self.url}/ws?clientId={client_id}")
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "status"
        return ws

    async def idle(self) -> None:
        for _ in range(500):
            if (await self.get("/prompt"))["exec_info"]["queue_remaining"] == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the queue did not drain")


async def messages_until(
    ws: aiohttp.ClientWebSocketResponse, kind: str, node: Any = "any"
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.BINARY:
            continue
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data = json.loads(msg.data)
        seen.append(data)
        if data["type"] == kind and (node == "any" or data["data"].get("node") == node):
            return seen


@pytest.fixture
async def client(comfy_sandbox: SandboxComfy) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(comfy_sandbox, session)


async def test_hung_node_ignores_interrupts_until_released(client: Client) -> None:
    client.server.knobs.hang("3")
    ws = await client.socket()
    prompt_id = await client.queue(chain())
    await messages_until(ws, "executing", "3")
    assert (await client.post("/interrupt", {"prompt_id": prompt_id}))[0] == 200
    await asyncio.sleep(0.3)  # 15 simulated seconds: a cooperative node would have stopped
    assert (await client.get("/queue"))["queue_running"][0][1] == prompt_id
    assert await client.get(f"/history/{prompt_id}") == {}
    client.server.knobs.release()
    seen = await messages_until(ws, "executing", None)
    interrupted = next(m for m in seen if m["type"] == "execution_interrupted")["data"]
    assert interrupted["node_id"] == "4" and sorted(interrupted["executed"]) == ["1", "2", "3"]
    entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False


async def test_slow_node_is_interrupted_at_a_progress_step(client: Client) -> None:
    client.server.knobs.slow("2", 100.0)
    ws = await client.socket()
    prompt_id = await client.queue(chain())
    seen = await messages_until(ws, "progress")
    assert seen[-1]["data"] == {"value": 1, "max": 100, "prompt_id": prompt_id, "node": "2"}
    await client.post("/interrupt")
    seen = await messages_until(ws, "executing", None)
    kinds = [m["type"] for m in seen]
    assert "execution_success" not in kinds
    interrupted = next(m for m in seen if m["type"] == "execution_interrupted")["data"]
    assert interrupted["node_id"] == "2" and interrupted["executed"] == ["1"]


async def test_crash_reports_an_execution_error_and_keeps_earlier_outputs(client: Client) -> None:
    client.server.knobs.crash("ImageInvert", "torch.OutOfMemoryError", "CUDA out of memory")
    ws = await client.socket()
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "crash"},
        },
    }
    prompt_id = await client.queue(prompt)
    seen = await messages_until(ws, "executing", None)
    error = next(m for m in seen if m["type"] == "execution_error")["data"]
    assert (error["node_id"], error["node_type"]) == ("3", "ImageInvert")
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"] == "CUDA out of memory\n"
    assert sorted(error["executed"]) == ["1", "2"]
    entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
    assert list(entry["outputs"]) == ["2"] and entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_error"
    log = (client.server.root / "comfyui.log").read_text()
    assert "!!! Exception during processing !!! CUDA out of memory" in log
    assert "torch.OutOfMemoryError: CUDA out of memory" in log


async def test_dropped_socket_has_no_close_frame_and_reconnect_resumes(client: Client) -> None:
    client.server.knobs.slow("3", 60.0)
    ws = await client.socket()
    prompt_id = await client.queue(chain())
    await messages_until(ws, "executing", "3")
    client.server.knobs.drop_websockets()
    msg = await ws.receive(timeout=10)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    assert ws.close_code in (None, 1006)
    again = await client.session.ws_connect(f"{client.url}/ws?clientId=tester")
    status = await again.receive_json(timeout=10)
    resent = await again.receive_json(timeout=10)
    assert status["type"] == "status" and status["data"]["sid"] == "tester"
    assert resent == {"type": "executing", "data": {"node": "3"}}
    seen = await messages_until(again, "executing", None)
    assert seen[-1]["data"] == {"node": None, "prompt_id": prompt_id}
    assert any(m["type"] == "execution_success" for m in seen)


async def test_drop_after_n_frames(client: Client) -> None:
    ws = await client.socket()
    client.server.knobs.drop_websockets(after=5)
    await client.queue(chain())
    frames = 0
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            break
        frames += 1
    assert frames == 5
    await client.idle()


async def test_failing_requests_then_recovery(client: Client) -> None:
    client.server.knobs.fail_requests(2, 502)
    for _ in range(2):
        async with client.session.get(client.url + "/system_stats") as resp:
            assert resp.status == 502 and await resp.read() == b""
    assert (await client.get("/system_stats"))["system"]["comfyui_version"] == "0.3.64"
    client.server.knobs.fail_requests(1)
    async with client.session.post(client.url + "/prompt", json={"prompt": chain()}) as resp:
        assert resp.status == 500
        assert await resp.text() == "500 Internal Server Error\n\nServer got itself in trouble"
    # The control API is never failed, and knobs set over HTTP act like the Python ones.
    client.server.knobs.fail_requests(1, 503)
    status, state = await client.post("/__sandbox/knobs", {"durations": {"ImageBlur": 2.5}})
    assert (
        status == 200
        and state["durations"] == {"ImageBlur": 2.5}
        and state["fail_statuses"] == [503]
    )


async def test_refused_connections_come_back_on_the_same_port(client: Client) -> None:
    port = client.server.port
    client.server.knobs.refuse_connections()
    await asyncio.sleep(0.2)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.session.get(client.url + "/prompt"):
            pass
    client.server.knobs.accept_connections()
    await asyncio.sleep(0.2)
    assert client.server.port == port
    assert await client.get("/prompt") == {"exec_info": {"queue_remaining": 0}}

    status, _ = await client.post(
        "/__sandbox/knobs", {"refuse": {"seconds": 10}}
    )  # 0.2 s at speed 50
    assert status == 200
    await asyncio.sleep(0.1)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.session.get(client.url + "/prompt"):
            pass
    await asyncio.sleep(0.4)
    assert await client.get("/prompt") == {"exec_info": {"queue_remaining": 0}}


async def test_restart_loses_queue_history_and_counter_but_keeps_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "keep"}},
    }
    knobs = Knobs()
    async with (
        SandboxComfy(root, speed=50, knobs=knobs) as first,
        aiohttp.ClientSession() as session,
    ):
        c = Client(first, session)
        done = await c.queue(prompt)
        await c.idle()
        assert (await c.get(f"/history/{done}"))[done]["outputs"]["2"]["images"][0][
            "filename"
        ] == "keep_00001_.png"
        knobs.hang("EmptyImage")
        await c.queue(chain(1))
        await c.queue(chain(2))
        assert (await c.get("/prompt"))["exec_info"]["queue_remaining"] == 2
        (root / "temp" / "leftover.png").write_bytes(b"x")
    knobs.release()
    async with (
        SandboxComfy(root, speed=50, knobs=knobs) as second,
        aiohttp.ClientSession() as session,
    ):
        c = Client(second, session)
        assert await c.get("/queue") == {"queue_running": [], "queue_pending": []}
        assert await c.get("/history") == {}
        assert not (root / "temp" / "leftover.png").exists()
        status, answer = await c.post("/prompt", {"prompt": prompt})
        assert status == 200 and answer["number"] == 0
        await c.idle()
        entry = (await c.get(f"/history/{answer['prompt_id']}"))[answer["prompt_id"]]
        assert entry["outputs"]["2"]["images"][0]["filename"] == "keep_00002_.png"
        assert (root / "output" / "keep_00001_.png").is_file()


async def test_uploads_and_model_files_appear_at_once(client: Client) -> None:
    root = client.server.root
    form = aiohttp.FormData()
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (1, 2, 3, 128)).save(buf, format="PNG")
    form.add_field("image", buf.getvalue(), filename="fresh.png")
    async with client.session.post(client.url + "/upload/image", data=form) as resp:
        assert resp.status == 200
    options = (await client.get("/object_info/LoadImage"))["LoadImage"]["input"]["required"][
        "image"
    ][0]
    assert "fresh.png" in options
    loras = (await client.get("/object_info/LoraLoader"))["LoraLoader"]["input"]["required"][
        "lora_name"
    ][0]
    assert loras == []
    (root / "models" / "loras" / "style").mkdir(parents=True)
    (root / "models" / "loras" / "style" / "ink.safetensors").write_bytes(
        b"\x02\x00\x00\x00\x00\x00\x00\x00{}"
    )
    (root / "models" / "unet" / "flux.sft").write_bytes(b"x")
    loras = (await client.get("/object_info/LoraLoader"))["LoraLoader"]["input"]["required"][
        "lora_name"
    ][0]
    assert loras == ["style/ink.safetensors"]
    assert await client.get("/models/diffusion_models") == ["flux.sft"]
    load = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "fresh.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    ws = await client.socket()
    await client.queue(load)
    seen = await messages_until(ws, "executing", None)
    assert any(m["type"] == "execution_success" for m in seen)


async def test_default_workflow_renders_a_real_picture_with_previews(
    client: Client, shared_dir: Path
) -> None:
    prompt = json.loads(
        (shared_dir / "fixtures" / "workflows-api" / "default.api.json").read_text()
    )
    prompt["3"]["inputs"]["steps"] = 4
    client.server.knobs.enable_previews("auto")
    ws = await client.socket()
    prompt_id = await client.queue(prompt)
    previews = 0
    progress = []
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.BINARY:
            assert (
                msg.data[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x01"
                and msg.data[8:10] == b"\xff\xd8"
            )
            previews += 1
            continue
        data = json.loads(msg.data)
        if data["type"] == "progress":
            progress.append((data["data"]["value"], data["data"]["max"], data["data"]["node"]))
        if data["type"] == "executing" and data["data"]["node"] is None:
            break
    assert progress == [(1, 4, "3"), (2, 4, "3"), (3, 4, "3"), (4, 4, "3")]
    assert previews == 4
    image = (await client.get(f"/history/{prompt_id}"))[prompt_id]["outputs"]["9"]["images"][0]
    async with client.session.get(f"{client.url}/view", params=image) as resp:
        picture = Image.open(io.BytesIO(await resp.read()))
    colors = picture.convert("RGB").getcolors(maxcolors=512 * 512) or []
    assert picture.size == (512, 512) and len(colors) > 100
    assert json.loads(picture.info["prompt"])["3"]["inputs"]["seed"] == 156680208700286


async def test_missing_model_file_fails_at_run_time(client: Client) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "gone.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    path = client.server.root / "models" / "checkpoints" / "gone.safetensors"
    path.write_bytes(b"x" * 16)
    ws = await client.socket()
    await client.queue(prompt)  # validates: the file is listed
    path.unlink()
    seen = await messages_until(ws, "executing", None)
    error = next(m for m in seen if m["type"] == "execution_error")["data"]
    assert error["exception_type"] == "FileNotFoundError"
    assert (
        error["exception_message"]
        == "Model in folder 'checkpoints' with filename 'gone.safetensors' not found.\n"
    )


def test_sandbox_in_a_thread(tmp_path: Path) -> None:
    import urllib.request

    handle = SandboxComfy(tmp_path / "root", speed=50).start_in_thread()
    try:
        with urllib.request.urlopen(handle.url + "/api/features", timeout=5) as resp:
            assert json.loads(resp.read()) == {
                "supports_preview_metadata": True,
                "max_upload_size": 104857600,
            }
        handle.knobs.fail_requests(1, 502)
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(handle.url + "/prompt", timeout=5)
        assert failed.value.code == 502
        failed.value.close()
    finally:
        handle.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(handle.url + "/prompt", timeout=2)


async def test_control_api_drives_hang_crash_and_release(client: Client) -> None:
    status, state = await client.post(
        "/__sandbox/knobs",
        {"hang": ["3"], "crash": {"4": {"exception_type": "RuntimeError", "message": "boom"}}},
    )
    assert status == 200 and state["hung"] == ["3"]
    assert state["crash"] == {"4": {"exception_type": "RuntimeError", "message": "boom"}}
    ws = await client.socket()
    await client.queue(chain())
    await messages_until(ws, "executing", "3")
    assert (await client.get("/__sandbox/knobs"))["hung"] == ["3"]
    assert (await client.post("/__sandbox/knobs", {"release": True}))[0] == 200
    seen = await messages_until(ws, "executing", None)
    error = next(m for m in seen if m["type"] == "execution_error")["data"]
    assert (error["node_id"], error["exception_message"]) == ("4", "boom\n")
    status, state = await client.post("/__sandbox/knobs", {"reset": True})
    assert state["crash"] == {} and state["hung"] == []
    assert (await client.post("/__sandbox/knobs", ["not", "an", "object"]))[0] == 400
