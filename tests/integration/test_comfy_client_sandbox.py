"""The client against the sandbox ComfyUI over loopback HTTP and WebSocket: every call.

Prompts use the small image nodes the sandbox really runs (EmptyImage, ImageInvert,
ImageBlur, SaveImage, PreviewImage, StringConcatenate, PreviewAny), 64x64 pixels.
"""

from __future__ import annotations

import asyncio
import hashlib
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyNotFound,
    ComfyRequestRejected,
    ComfyUnreachable,
    ExecutionFailed,
    ExecutionInterrupted,
    JobTimeout,
    PromptLost,
    PromptRejected,
)
from comfyfleet.models import events as ev
from comfyfleet.models.comfy import FileRef
from comfyfleet.util.clock import ManualClock, ScaledClock

SETTINGS = ComfySettings(poll_interval=0.1, ws_reconnect_attempts=6, connect_timeout=5)


def graph(color: int = 0x336699, prefix: str = "fleet/run") -> dict[str, Any]:
    """Seven nodes: two image outputs (saved + preview) and a text output."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color},
            "_meta": {"title": "Canvas"},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["2", 0], "blur_radius": 3, "sigma": 1.0},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "6": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": "hello", "string_b": "fleet", "delimiter": " "},
        },
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }


def png(color: tuple[int, int, int, int] = (200, 10, 10, 255), size: int = 8) -> bytes:
    out = BytesIO()
    Image.new("RGBA", (size, size), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
async def client(comfy_sandbox: Any) -> Any:
    async with ComfyClient(comfy_sandbox.url, settings=SETTINGS) as c:
        yield c


async def wait_running(client: ComfyClient, prompt_id: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while prompt_id not in [item.prompt_id for item in (await client.queue()).running]:
        assert loop.time() < deadline, f"prompt {prompt_id} never started"
        await asyncio.sleep(0.02)


async def test_server_calls(client: ComfyClient) -> None:
    stats = await client.system_stats()
    assert stats.comfyui_version and stats.devices
    assert (await client.features())["supports_preview_metadata"] is True
    catalog = await client.object_info()
    assert "SaveImage" in catalog and catalog["SaveImage"].output_node
    assert await client.object_info() is catalog, "cached per server"
    assert await client.object_info(refresh=True) is not catalog
    blur = await client.node_info("ImageBlur")
    assert blur is not None and "blur_radius" in blur.inputs
    assert await client.node_info("NoSuchNode") is None
    folders = await client.models()
    assert "checkpoints" in folders
    assert isinstance(await client.model_files("checkpoints"), list)
    with pytest.raises(ComfyNotFound):
        await client.model_files("no-such-folder")
    assert isinstance(await client.embeddings(), list)
    assert isinstance(await client.settings(), dict)
    assert await client.queue_remaining() == 0
    queue = await client.queue()
    assert len(queue) == 0


async def test_wait_for_success_then_cached_rerun(client: ComfyClient, tmp_path: Path) -> None:
    seen: list[ev.Event] = []
    async with client.events() as stream:
        accepted = await client.queue_prompt(graph())
        result = await client.wait_for(
            accepted.prompt_id, on_event=seen.append, timeout=60, stream=stream
        )
    assert result.status == "success" and not result.from_history
    assert result.prompt_id == accepted.prompt_id and not accepted.node_errors
    assert set(result.outputs) == {"4", "5", "7"}
    assert result.outputs["7"].text == ("hello fleet",)
    saved = result.outputs["4"].images[0]
    assert (saved.type, saved.subfolder) == ("output", "fleet")
    assert result.outputs["5"].images[0].type == "temp"
    assert set(result.node_timings) == {str(n) for n in range(1, 8)}
    assert all(t >= 0 for t in result.node_timings.values())
    assert result.cached == ()
    assert result.messages[-1].type == "execution_success"
    kinds = {type(e) for e in seen}
    assert {ev.ExecutionStart, ev.Executing, ev.Executed, ev.ExecutionSuccess} <= kinds
    assert all(ev.event_prompt_id(e) in (None, accepted.prompt_id) for e in seen)

    for node_id, ref in result.files():
        data = await client.view(ref)
        got = await client.download(ref, tmp_path / node_id / ref.filename)
        assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest()
        assert got.path.read_bytes() == data and data.startswith(b"\x89PNG")
    assert not list(tmp_path.rglob("*.part"))

    rerun = await client.queue_prompt(graph())
    cached = await client.wait_for(rerun.prompt_id, timeout=60)
    assert set(cached.cached) == {str(n) for n in range(1, 8)}
    assert cached.node_timings == {} and set(cached.outputs) == {"4", "5", "7"}


async def test_free_memory_empties_the_cache(client: ComfyClient) -> None:
    first = await client.queue_prompt(graph(color=1))
    await client.wait_for(first.prompt_id, timeout=60)
    await client.free(unload_models=True, free_memory=True)
    again = await client.queue_prompt(graph(color=1))
    result = await client.wait_for(again.prompt_id, timeout=60)
    assert result.cached == ()


async def test_execution_error(client: ComfyClient, comfy_sandbox: Any) -> None:
    comfy_sandbox.knobs.crash("ImageBlur", "RuntimeError", "out of cheese")
    accepted = await client.queue_prompt(graph(color=2))
    with pytest.raises(ExecutionFailed) as caught:
        await client.wait_for(accepted.prompt_id, timeout=60)
    err = caught.value
    assert (err.node_id, err.node_type, err.exception_type) == ("3", "ImageBlur", "RuntimeError")
    assert "out of cheese" in err.exception_message and err.traceback and err.exit_code == 4
    entry = await client.history(accepted.prompt_id)
    assert entry is not None and not entry.succeeded


async def test_interrupt(client: ComfyClient, comfy_sandbox: Any) -> None:
    comfy_sandbox.knobs.slow("3", 30.0)
    accepted = await client.queue_prompt(graph(color=3))
    waiting = asyncio.create_task(client.wait_for(accepted.prompt_id, timeout=60))
    await wait_running(client, accepted.prompt_id)
    await client.interrupt(accepted.prompt_id)
    with pytest.raises(ExecutionInterrupted) as caught:
        await waiting
    assert caught.value.prompt_id == accepted.prompt_id and caught.value.exit_code == 5


async def test_timeout_leaves_the_prompt_to_the_caller(
    client: ComfyClient, comfy_sandbox: Any
) -> None:
    comfy_sandbox.knobs.hang("ImageBlur")
    accepted = await client.queue_prompt(graph(color=4))
    with pytest.raises(JobTimeout, match=accepted.prompt_id):
        await client.wait_for(accepted.prompt_id, timeout=0.5)
    assert accepted.prompt_id in [item.prompt_id for item in (await client.queue()).running]
    comfy_sandbox.knobs.release()
    result = await client.wait_for(accepted.prompt_id, timeout=60)
    assert result.status == "success"


async def until(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never met"
        await asyncio.sleep(0.02)


async def test_socket_dropped_mid_run_reconnects(client: ComfyClient, comfy_sandbox: Any) -> None:
    comfy_sandbox.knobs.hang("3")
    seen: list[ev.Event] = []
    async with client.events() as stream:
        accepted = await client.queue_prompt(graph(color=5))
        waiting = asyncio.create_task(
            client.wait_for(accepted.prompt_id, on_event=seen.append, timeout=60, stream=stream)
        )
        await wait_running(client, accepted.prompt_id)
        comfy_sandbox.knobs.drop_websockets()
        await until(lambda: any(isinstance(e, ev.Reconnected) for e in seen))
        comfy_sandbox.knobs.release()
        result = await waiting
    assert result.status == "success" and set(result.outputs) == {"4", "5", "7"}
    assert not result.from_history, "the reconnected socket delivered the end"
    after = seen[[isinstance(e, ev.Reconnected) for e in seen].index(True) + 1 :]
    assert any(isinstance(e, ev.Executed) and e.node == "4" for e in after)


async def test_socket_lost_for_good_falls_back_to_history(comfy_sandbox: Any) -> None:
    settings = ComfySettings(poll_interval=0.1, ws_reconnect_attempts=0)
    comfy_sandbox.knobs.hang("3")
    async with (
        ComfyClient(comfy_sandbox.url, settings=settings) as client,
        client.events() as stream,
    ):
        accepted = await client.queue_prompt(graph(color=6))
        waiting = asyncio.create_task(
            client.wait_for(accepted.prompt_id, timeout=60, stream=stream)
        )
        await wait_running(client, accepted.prompt_id)
        comfy_sandbox.knobs.drop_websockets()
        await until(lambda: not stream.connected)
        comfy_sandbox.knobs.release()
        result = await waiting
    assert result.from_history and result.status == "success"
    assert set(result.outputs) == {"4", "5", "7"}


async def test_history_is_polled_while_the_socket_is_down(comfy_sandbox: Any) -> None:
    # On a manual clock the reconnect backoff (0.25 s) never runs out while the test moves
    # time by one poll interval (0.1 s): the result can only come from polling /history.
    clock = ManualClock()
    settings = ComfySettings(poll_interval=0.1, ws_reconnect_attempts=3)
    comfy_sandbox.knobs.hang("3")
    async with (
        ComfyClient(comfy_sandbox.url, settings=settings, clock=clock) as client,
        ComfyClient(comfy_sandbox.url) as observer,
        client.events() as stream,
    ):
        accepted = await client.queue_prompt(graph(color=7))
        waiting = asyncio.create_task(client.wait_for(accepted.prompt_id, stream=stream))
        await wait_running(observer, accepted.prompt_id)
        comfy_sandbox.knobs.drop_websockets()
        await until(lambda: not stream.connected)
        comfy_sandbox.knobs.release()
        while await observer.history(accepted.prompt_id) is None:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        assert not waiting.done(), "nothing can end the wait before time moves"
        clock.advance(0.1)
        result = await asyncio.wait_for(waiting, 10)
        assert not stream.connected
    assert result.from_history and set(result.outputs) == {"4", "5", "7"}


async def test_result_of_a_prompt_finished_before_waiting(client: ComfyClient) -> None:
    accepted = await client.queue_prompt(graph(color=70))
    async with client.events() as stream:
        async for event in stream:
            if isinstance(event, ev.Executing) and event.node is None:
                break
    result = await client.wait_for(accepted.prompt_id, timeout=30)
    assert result.from_history and set(result.outputs) == {"4", "5", "7"}


async def test_idempotent_resubmission(client: ComfyClient) -> None:
    prompt = graph(color=8)
    first = await client.queue_prompt(prompt, prompt_id="fleet-job-0001")
    again = await client.queue_prompt(prompt, prompt_id="fleet-job-0001", resubmit=True)
    assert first.prompt_id == again.prompt_id == "fleet-job-0001"
    assert not first.existing and again.existing
    await client.wait_for("fleet-job-0001", timeout=60)
    after = await client.queue_prompt(prompt, prompt_id="fleet-job-0001", resubmit=True)
    assert after.existing
    assert list(await client.history_all()).count("fleet-job-0001") == 1
    assert await client.queue_remaining() == 0


async def test_queue_and_history_operations(client: ComfyClient, comfy_sandbox: Any) -> None:
    comfy_sandbox.knobs.hang("ImageBlur")
    running = await client.queue_prompt(graph(color=9))
    await wait_running(client, running.prompt_id)
    pending = [await client.queue_prompt(graph(color=10 + i)) for i in range(3)]
    front = await client.queue_prompt(graph(color=20), front=True)
    late = await client.queue_prompt(graph(color=21), number=10_000)
    queue = await client.queue()
    assert [item.prompt_id for item in queue.running] == [running.prompt_id]
    assert queue.pending[0].prompt_id == front.prompt_id
    assert queue.pending[-1].prompt_id == late.prompt_id
    assert queue.running[0].client_id == client.client_id
    assert await client.queue_remaining() == 6

    await client.delete_queued([pending[0].prompt_id])
    assert pending[0].prompt_id not in await client.queue()
    with pytest.raises(PromptLost):
        await client.wait_for(pending[0].prompt_id, timeout=30)
    await client.clear_queue()
    assert [item.prompt_id for item in (await client.queue()).pending] == []
    assert await client.queue_remaining() == 1

    comfy_sandbox.knobs.release()
    done = await client.wait_for(running.prompt_id, timeout=60)
    assert done.status == "success"
    ok = await client.queue_prompt(graph(color=30))
    await client.wait_for(ok.prompt_id, timeout=60)
    history = await client.history_all()
    assert list(history)[-2:] == [running.prompt_id, ok.prompt_id]
    assert list(await client.history_all(max_items=1)) == [ok.prompt_id]
    assert list(await client.history_all(offset=1)) == list(history)[1:]
    await client.delete_history([running.prompt_id])
    assert await client.history(running.prompt_id) is None
    await client.clear_history()
    assert await client.history_all() == {}


async def test_partial_targets(client: ComfyClient) -> None:
    accepted = await client.queue_prompt(graph(color=40), partial_targets=["7"])
    result = await client.wait_for(accepted.prompt_id, timeout=60)
    assert set(result.outputs) == {"7"}
    assert set(result.node_timings) <= {"6", "7"}


async def test_rejected_and_partially_accepted(client: ComfyClient) -> None:
    bad = graph()
    bad["3"]["inputs"]["blur_radius"] = 0
    bad["8"] = {"class_type": "LoadImage", "inputs": {"image": "does_not_exist.png"}}
    bad["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    accepted = await client.queue_prompt(bad)
    assert {ne.node_id for ne in accepted.node_errors} == {"3", "8"}
    result = await client.wait_for(accepted.prompt_id, timeout=60)
    assert set(result.outputs) == {"5", "7"}

    wrong = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["1", 0],
                "upscale_method": "foo",
                "width": 32,
                "height": 32,
                "crop": "disabled",
            },
            "_meta": {"title": "Shrink"},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    with pytest.raises(PromptRejected) as caught:
        await client.queue_prompt(wrong)
    text = str(caught.value)
    assert "node 2 (ImageScale) 'Shrink'" in text and "input 'upscale_method'" in text
    assert "'bilinear'" in text and caught.value.exit_code == 3
    assert await client.queue_remaining() == 0


async def test_uploads_view_and_download(client: ComfyClient, tmp_path: Path) -> None:
    red = png()
    ref = await client.upload_image(red, filename="fleet.png")
    assert ref == FileRef("fleet.png", "", "input")
    assert await client.view(ref) == red
    assert await client.upload_image(red, filename="fleet.png") == ref, "same bytes, same file"
    blue = png((10, 10, 200, 255))
    renamed = await client.upload_image(blue, filename="fleet.png")
    assert renamed.filename == "fleet (1).png" and await client.view(renamed) == blue
    replaced = await client.upload_image(blue, filename="fleet.png", overwrite=True)
    assert replaced == ref and await client.view(ref) == blue
    nested = await client.upload_image(red, filename="n.png", subfolder="a/b")
    assert nested.annotated_name == "a/b/n.png" and await client.view(nested) == red
    anonymous = await client.upload_image(red)
    assert anonymous.filename.endswith(".png") and anonymous == await client.upload_image(red)
    source = tmp_path / "from-disk.png"
    source.write_bytes(red)
    assert (await client.upload_image(source)).filename == "from-disk.png"
    temp = await client.upload_image(red, filename="t.png", type="temp")
    assert temp.type == "temp" and temp.annotated_name == "t.png [temp]"

    mask = await client.upload_mask(png((0, 0, 0, 0)), original=ref, filename="fleet-mask.png")
    assert (mask.subfolder, mask.type) == ("clipspace", "input")
    masked = Image.open(BytesIO(await client.view(mask)))
    assert masked.mode == "RGBA" and masked.getpixel((0, 0))[3] == 0
    alpha = Image.open(BytesIO(await client.view(ref, channel="a")))
    assert alpha.size == (8, 8)
    assert (await client.view(ref, preview="jpeg;90")).startswith(b"\xff\xd8")

    got = await client.download(ref, tmp_path / "out" / "copy.png")
    assert got.sha256 == hashlib.sha256(blue).hexdigest() and got.size == len(blue)
    with pytest.raises(ComfyNotFound):
        await client.view(FileRef("missing.png", "", "output"))


async def test_userdata_with_nested_paths(client: ComfyClient) -> None:
    path = "workflows/team a/night run.json"
    await client.userdata_write(path, b'{"nodes": []}')
    await client.userdata_write("workflows/top.json", b"{}")
    assert await client.userdata_read(path) == b'{"nodes": []}'
    listed = await client.userdata_list("workflows", recurse=True)
    assert sorted(listed) == ["team a/night run.json", "top.json"]
    assert await client.userdata_list("workflows") == ["top.json"]
    full = {e.path: e for e in await client.userdata_list_full("workflows")}
    assert full["team a/night run.json"].size == len(b'{"nodes": []}')
    assert await client.userdata_list("nothing-here") == []
    with pytest.raises(ComfyRequestRejected) as conflict:
        await client.userdata_write(path, b"{}", overwrite=False)
    assert conflict.value.status == 409
    await client.userdata_move(path, "workflows/archive/night.json")
    assert await client.userdata_read("workflows/archive/night.json") == b'{"nodes": []}'
    with pytest.raises(ComfyNotFound):
        await client.userdata_read(path)
    await client.userdata_delete("workflows/archive/night.json")
    with pytest.raises(ComfyNotFound, match="night"):
        await client.userdata_delete("workflows/archive/night.json")


async def test_event_streams_share_one_socket_and_reconnect(comfy_sandbox: Any) -> None:
    settings = ComfySettings(ws_reconnect_attempts=2, connect_timeout=2)
    async with (
        ComfyClient(comfy_sandbox.url, settings=settings, clock=ScaledClock(20)) as client,
        client.events() as first,
        client.events() as second,
    ):
        hello = await asyncio.wait_for(anext(first), 5)
        assert hello == ev.Status(0, client.client_id)
        assert isinstance(await asyncio.wait_for(anext(first), 5), ev.FeatureFlags)
        accepted = await client.queue_prompt(graph(color=50))
        await client.wait_for(accepted.prompt_id, timeout=60, stream=second)
        mine = [e async for e in _until_done(first, accepted.prompt_id)]
        assert any(isinstance(e, ev.ExecutionSuccess) for e in mine), "both streams got it"

        comfy_sandbox.knobs.drop_websockets()
        assert await asyncio.wait_for(anext(first), 5) == ev.Reconnected(1)
        again = await asyncio.wait_for(anext(first), 5)
        assert again == ev.Status(0, client.client_id), "same clientId after reconnecting"

        comfy_sandbox.knobs.refuse_connections()
        comfy_sandbox.knobs.drop_websockets()
        with pytest.raises(ComfyUnreachable, match="gave up after 2 reconnect attempts"):
            async for _event in first:
                pass
        comfy_sandbox.knobs.accept_connections()


async def _until_done(stream: Any, prompt_id: str) -> Any:
    async for event in stream:
        yield event
        if isinstance(event, ev.Executing) and event.node is None and event.prompt_id == prompt_id:
            return
