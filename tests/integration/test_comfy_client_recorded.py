"""The client against answers captured from a real ComfyUI server.

An httpx transport replays the chosen fixture files (status, content type and body as
captured) for the request each one recorded; anything else is a 599 that fails the test.
The WebSocket side points at a closed port, so `wait_for` has to follow prompts by polling.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyNotFound,
    ComfyRequestRejected,
    ExecutionFailed,
    ExecutionInterrupted,
    PromptRejected,
)
from comfyfleet.models.comfy import FileRef
from comfyfleet.util.clock import ScaledClock


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _split(raw_path: str) -> tuple[str, set[tuple[str, str]]]:
    parts = urlsplit(raw_path)
    return parts.path, {(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if v}


class Recorded:
    """A transport answering each request with the fixture that captured it.

    A capture matches a request with the same method and path whose query holds every
    parameter of the captured one; the capture with the most parameters wins.
    """

    def __init__(self, fixtures: Path, *names: str) -> None:
        self.answers: list[tuple[str, str, set[tuple[str, str]], dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []
        for name in names:
            capture = json.loads((fixtures / name).read_text())
            path, query = _split(capture["request"]["path"])
            self.answers.append((capture["request"]["method"], path, query, capture["response"]))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, query = _split(request.url.raw_path.decode())
        matches = [
            (len(q), response)
            for method, p, q, response in self.answers
            if method == request.method and p == path and q <= query
        ]
        if not matches:
            return httpx.Response(599, text=f"no capture for {request.method} {request.url}")
        answer = max(matches, key=lambda m: m[0])[1]
        kind = answer["headers"].get("Content-Type") or ""
        body = answer.get("body", "")
        content = json.dumps(body).encode() if "json" in kind else str(body or "").encode()
        headers = {"Content-Type": kind} if kind else {}
        return httpx.Response(answer["status"], content=content, headers=headers)


def client_for(recorded: Recorded) -> ComfyClient:
    return ComfyClient(
        f"http://127.0.0.1:{closed_port()}",
        transport=recorded.transport(),
        settings=ComfySettings(poll_interval=0.05, ws_reconnect_attempts=1),
        clock=ScaledClock(50.0),
    )


async def test_server_answers(comfy_fixtures: Path) -> None:
    rec = Recorded(
        comfy_fixtures,
        "GET_system_stats.json",
        "GET_features.json",
        "GET_models.json",
        "GET_models_checkpoints.json",
        "GET_models_unknown_folder.json",
        "GET_embeddings.json",
        "GET_prompt_running.json",
        "GET_object_info_SaveImage.json",
        "GET_object_info_unknown_node.json",
        "GET_settings_after.json",
    )
    async with client_for(rec) as client:
        stats = await client.system_stats()
        assert (stats.comfyui_version, stats.os) == ("0.3.64", "posix")
        assert stats.devices[0].type == "cpu" and stats.devices[0].index is None
        assert (await client.features())["supports_preview_metadata"] is True
        assert "checkpoints" in await client.models()
        assert isinstance(await client.model_files("checkpoints"), list)
        with pytest.raises(ComfyNotFound, match="no model folder 'nosuchfolder'"):
            await client.model_files("nosuchfolder")
        assert isinstance(await client.embeddings(), list)
        assert await client.queue_remaining() >= 1
        save = await client.node_info("SaveImage")
        assert save is not None and save.output_node and "filename_prefix" in save.inputs
        assert await client.node_info("NoSuchNode") is None
        assert await client.settings() == {"Comfy.Fixture.Example": "value-1"}


async def test_queue_items_sorted_as_they_will_run(comfy_fixtures: Path) -> None:
    rec = Recorded(comfy_fixtures, "GET_queue_running_and_pending.json")
    async with client_for(rec) as client:
        queue = await client.queue()
    assert len(queue.running) == 1 and queue.running[0].outputs == ("5",)
    numbers = [item.number for item in queue.pending]
    assert numbers == sorted(numbers) and numbers[0] == -10 and 0.5 in numbers
    assert queue.running[0].client_id == "c1d66e84-5ae2-4b6e-9eb4-c28768cd2d75"
    assert queue.running[0].prompt_id in queue and "nope" not in queue


async def test_history_entries(comfy_fixtures: Path) -> None:
    rec = Recorded(
        comfy_fixtures,
        "GET_history_prompt_id_success.json",
        "GET_history_unknown_id.json",
        "GET_history_prompt_id_cached.json",
        "GET_history_max_items_2.json",
    )
    async with client_for(rec) as client:
        entry = await client.history("f0a6192f-9791-4ce7-ac90-8d7f9725f84d")
        assert await client.history("does-not-exist") is None
        cached = await client.history("5f9e1086-81a4-4509-a473-c2ceb8ab17e2")
        last_two = await client.history_all(max_items=2)
    assert entry is not None and entry.succeeded and entry.completed
    assert entry.outputs["4"].images == (FileRef("run_00001_.png", "fixture", "output"),)
    assert entry.outputs["7"].text == ("hello world",)
    assert entry.item is not None and entry.item.outputs == ("5", "7", "4")
    assert [m.type for m in entry.messages][-1] == "execution_success"
    assert cached is not None and cached.cached_nodes
    assert len(last_two) == 2


async def test_wait_for_by_polling_success(comfy_fixtures: Path) -> None:
    rec = Recorded(comfy_fixtures, "GET_history_prompt_id_success.json", "GET_queue_idle.json")
    async with client_for(rec) as client:
        result = await client.wait_for("f0a6192f-9791-4ce7-ac90-8d7f9725f84d", timeout=30)
    assert result.from_history and result.status == "success"
    assert [ref.relpath for _, ref in result.files()] == [
        "ComfyUI_temp_tksvp_00001_.png",
        "fixture/run_00001_.png",
    ]


async def test_wait_for_by_polling_failures(comfy_fixtures: Path) -> None:
    rec = Recorded(
        comfy_fixtures,
        "GET_history_prompt_id_execution_error.json",
        "GET_history_prompt_id_interrupted.json",
        "GET_queue_idle.json",
    )
    async with client_for(rec) as client:
        with pytest.raises(ExecutionFailed) as failed:
            await client.wait_for("972472b6-0ff4-4938-ad26-768cd6b05251", timeout=30)
        with pytest.raises(ExecutionInterrupted) as stopped:
            await client.wait_for("a75c9f90-5f77-4145-ad27-651e6f7b1470", timeout=30)
    err = failed.value
    assert (err.node_id, err.node_type) == ("1", "LoadImage")
    assert err.exception_type == "PIL.UnidentifiedImageError"
    assert "nodes.py" in str(err) and err.traceback
    assert stopped.value.node_id == "3"


def _rejections(fixtures: Path) -> list[str]:
    names = []
    for path in sorted(fixtures.glob("POST_prompt_*.json")):
        capture = json.loads(path.read_text())
        response = capture["response"]
        if response["status"] == 400 and isinstance(response["body"], dict):
            names.append(path.name)
    return names


async def test_rejected_prompts_list_every_node_error(comfy_fixtures: Path) -> None:
    names = _rejections(comfy_fixtures)
    assert len(names) >= 10, "the POST_prompt_invalid_* fixtures are missing"
    for name in names:
        await _check_rejection(comfy_fixtures, name)


async def _check_rejection(comfy_fixtures: Path, name: str) -> None:
    capture = json.loads((comfy_fixtures / name).read_text())
    body = capture["response"]["body"]
    rec = Recorded(comfy_fixtures, name)
    prompt = capture["request"]["json"].get("prompt", {})
    async with client_for(rec) as client:
        with pytest.raises(PromptRejected) as caught:
            await client.queue_prompt(prompt)
    err = caught.value
    text = str(err)
    assert err.error_type == body["error"]["type"], name
    assert body["error"]["message"] in text, name
    assert {ne.node_id for ne in err.node_errors} == set(body["node_errors"]), name
    for node_id, wire in body["node_errors"].items():
        assert f"node {node_id} ({wire['class_type']})" in text, name
        for detail in wire["errors"]:
            assert detail["message"] in text, name
            input_name = (detail.get("extra_info") or {}).get("input_name")
            if input_name:
                assert f"input '{input_name}'" in text, name
            config = (detail.get("extra_info") or {}).get("input_config")
            if detail["type"] == "value_not_in_list" and config:
                for allowed in config[0]:
                    assert repr(allowed) in text, name
    sent = json.loads(rec.requests[-1].content)
    assert sent["client_id"] == client.client_id and sent["prompt_id"], name


async def test_partially_accepted_prompt(comfy_fixtures: Path) -> None:
    name = "POST_prompt_accepted_partially_invalid_one_output_valid_one_invalid.json"
    capture = json.loads((comfy_fixtures / name).read_text())
    async with client_for(Recorded(comfy_fixtures, name)) as client:
        accepted = await client.queue_prompt(capture["request"]["json"]["prompt"])
    assert accepted.prompt_id == "6c500fb9-06f3-4050-9373-2d13d59eaa25"
    assert accepted.number == 29 and not accepted.existing
    (error,) = accepted.node_errors
    assert (error.node_id, error.class_type, error.dependent_outputs) == ("3", "LoadImage", ("4",))
    assert error.errors[0].input_name == "image"
    assert "does_not_exist.png" in error.errors[0].describe()


async def test_userdata_answers(comfy_fixtures: Path) -> None:
    rec = Recorded(
        comfy_fixtures,
        "GET_userdata_workflows_full_info.json",
        "GET_userdata_workflows_recurse.json",
        "GET_userdata_file_encoded.json",
        "GET_userdata_file_missing.json",
        "POST_userdata_move.json",
        "DELETE_userdata_file_missing.json",
        "POST_userdata_workflow_overwrite_false_conflict.json",
    )
    async with client_for(rec) as client:
        full = await client.userdata_list_full("workflows")
        assert [(e.path, e.size) for e in full] == [("x.json", 61), ("sub/z.json", 8)]
        assert await client.userdata_list("workflows", recurse=True) == ["x.json", "sub/z.json"]
        assert json.loads(await client.userdata_read("workflows/x.json"))["version"] == 0.4
        with pytest.raises(ComfyNotFound, match=r"workflows/nope\.json"):
            await client.userdata_read("workflows/nope.json")
        await client.userdata_move("workflows/x.json", "workflows/y.json")
        with pytest.raises(ComfyNotFound, match=r"workflows/y\.json"):
            await client.userdata_delete("workflows/y.json")
        with pytest.raises(ComfyRequestRejected, match="File already exists") as conflict:
            await client.userdata_write("workflows/x.json", b'{"a": 1}', overwrite=False)
        assert conflict.value.status == 409


async def test_missing_userdata_directory_lists_nothing(comfy_fixtures: Path) -> None:
    rec = Recorded(comfy_fixtures, "GET_userdata_workflows_missing_dir.json")
    async with client_for(rec) as client:
        assert await client.userdata_list("workflows") == []


async def test_upload_and_view_answers(comfy_fixtures: Path, tmp_path: Path) -> None:
    rec = Recorded(
        comfy_fixtures,
        "POST_upload_image.json",
        "POST_upload_mask.json",
        "GET_view_missing_file.json",
    )
    async with client_for(rec) as client:
        ref = await client.upload_image(b"\x89PNG\r\n\x1a\nfake", filename="fixture_upload.png")
        assert ref == FileRef("fixture_upload.png", "", "input")
        assert ref.annotated_name == "fixture_upload.png"
        mask = await client.upload_mask(b"\x89PNG\r\n\x1a\nmask", original=ref)
        assert mask == FileRef("clipspace-mask.png", "clipspace", "input")
        assert mask.annotated_name == "clipspace/clipspace-mask.png"
        missing = FileRef("nope.png", "", "output")
        with pytest.raises(ComfyNotFound, match=r"no output file 'nope\.png'"):
            await client.view(missing)
        with pytest.raises(ComfyNotFound):
            await client.download(missing, tmp_path / "nope.png")
    assert not list(tmp_path.iterdir()), "a failed download leaves nothing behind"
    upload = rec.requests[0]
    assert b'name="overwrite"\r\n\r\nfalse' in upload.content
    assert b'filename="fixture_upload.png"' in upload.content
    assert b'"filename": "fixture_upload.png"' in rec.requests[1].content  # original_ref
