"""The sandbox ComfyUI against the captured HTTP fixtures: same request, same answer.

Each test sends a fixture's request to a fresh sandbox (after recreating the state the capture
had) and compares status, Content-Type and body. Normalisations, where values are run-specific:
* absolute paths: the sandbox root is written `<COMFYUI>`, as the fixtures anonymise it;
* prompt ids are compared as "a uuid" unless the client chose them;
* file times, sizes of re-encoded images, RAM/VRAM figures, argv: compared by type;
* the capture ran with no model files and no `user/default`: tests that replay that state
  delete the sandbox's placeholder checkpoint or its user folder first.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from PIL import Image

from comfyfleet.sandbox.comfy import SandboxComfy
from comfyfleet.sandbox.comfy.catalog import captured_object_info
from comfyfleet.sandbox.comfy.layout import PLACEHOLDER_CHECKPOINT, write_safetensors

pytestmark = pytest.mark.timeout(60)

Reply = tuple[int, CIMultiDict[str], bytes]


def envelope(fixtures: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fixtures / name).read_text())
    return data


def anonymise(value: Any, root: Path) -> Any:
    text = json.dumps(value).replace(str(root.resolve()), "<COMFYUI>")
    return json.loads(text)


def same_shape(got: Any, want: Any) -> bool:
    """Types and keys only (lists: element shapes where both have one): run-specific values."""
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and set(got) == set(want)
            and all(same_shape(got[k], want[k]) for k in want)
        )
    if isinstance(want, list):
        return isinstance(got, list) and all(
            same_shape(g, w) for g, w in zip(got, want, strict=False)
        )
    if isinstance(want, bool) or want is None:
        return type(got) is type(want)
    if isinstance(want, int | float):
        return isinstance(got, int | float) and not isinstance(got, bool)
    return type(got) is type(want)


class Api:
    """A raw aiohttp client for one sandbox."""

    def __init__(self, server: SandboxComfy, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.root = server.root

    async def call(self, method: str, path: str, **kw: Any) -> Reply:
        url = self.server.url + path
        async with self.session.request(method, url, **kw) as resp:
            return resp.status, CIMultiDict(resp.headers), await resp.read()

    async def replay(self, fixture: dict[str, Any], **kw: Any) -> Reply:
        req = fixture["request"]
        if "json" in req and "data" not in kw:
            kw["json"] = req["json"]
        return await self.call(req["method"], req["path"], headers=req.get("headers"), **kw)


def check_envelope(got: Reply, fixture: dict[str, Any], root: Path, body: str = "exact") -> Any:
    """Status and Content-Type always; the body exactly, by shape, or not at all."""
    status, headers, raw = got
    want = fixture["response"]
    assert status == want["status"], raw[:500]
    assert headers.get("Content-Type") == want["headers"].get("Content-Type")
    if want.get("body_length") == 0:
        assert raw == b""
        return None
    if "json" not in str(want["headers"].get("Content-Type")):
        if body == "exact":
            assert raw.decode() == want["body"]
        return raw
    if body == "none":
        return json.loads(raw)
    parsed = anonymise(json.loads(raw), root)
    if body == "exact":
        assert parsed == want["body"]
    elif body == "shape":
        assert same_shape(parsed, want["body"]), (parsed, want["body"])
    return parsed


@pytest.fixture
async def api(comfy_sandbox: SandboxComfy) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(comfy_sandbox, session)


def no_models(root: Path) -> None:
    (root / "models" / "checkpoints" / PLACEHOLDER_CHECKPOINT).unlink()


def png(color: tuple[int, int, int], size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def upload_form(data: bytes, filename: str, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


def test_packaged_object_info_equals_the_capture(object_info_full: dict[str, Any]) -> None:
    assert captured_object_info() == object_info_full


EXACT_STATELESS = [
    "GET_features.json",
    "GET_prompt_idle.json",
    "GET_queue_idle.json",
    "GET_api_prefix_queue.json",
    "GET_embeddings.json",
    "GET_models.json",
    "GET_models_checkpoints.json",
    "GET_models_loras.json",
    "GET_models_unknown_folder.json",
    "GET_extensions.json",
    "GET_object_info_SaveImage.json",
    "GET_api_prefix_object_info_SaveImage.json",
    "GET_object_info_unknown_node.json",
    "GET_object_info_LoadImage.json",
    "GET_object_info_CheckpointLoaderSimple.json",
    "GET_object_info_KSampler.json",
    "GET_experiment_models.json",
    "GET_experiment_models_checkpoints.json",
    "GET_internal_folder_paths.json",
    "GET_internal_files_input.json",
    "GET_internal_files_bad.json",
    "GET_history_empty.json",
    "GET_history_unknown_id.json",
    "GET_settings_initial.json",
    "GET_userdata_no_dir.json",
    "GET_userdata_traversal.json",
    "GET_view_no_filename.json",
    "GET_view_missing_file.json",
    "GET_view_bad_type.json",
    "GET_view_traversal.json",
    "GET_view_subfolder_traversal.json",
    "GET_view_metadata_missing.json",
    "GET_userdata_file_missing.json",
    "POST_free.json",
    "POST_history_clear.json",
    "POST_history_delete.json",
    "POST_interrupt_global.json",
    "POST_interrupt_no_body.json",
    "POST_interrupt_prompt_id_not_running.json",
    "POST_queue_clear.json",
    "POST_queue_delete.json",
    "POST_prompt_origin_mismatch.json",
    "POST_prompt_invalid_no_prompt_key.json",
    "POST_prompt_invalid_empty_prompt_object.json",
    "POST_prompt_invalid_missing_class_type.json",
    "POST_prompt_invalid_unknown_class_type.json",
    "POST_prompt_invalid_no_output_nodes.json",
    "POST_prompt_invalid_partial_targets_not_output.json",
    "POST_prompt_invalid_missing_required_input.json",
    "POST_prompt_invalid_bad_link_length.json",
    "POST_prompt_invalid_link_type_mismatch.json",
    "POST_prompt_invalid_value_below_min.json",
    "POST_prompt_invalid_value_above_max.json",
    "POST_prompt_invalid_value_wrong_type.json",
    "POST_prompt_invalid_combo_value_not_in_list.json",
    "POST_prompt_invalid_loadimage_missing_file.json",
    "POST_prompt_invalid_missing_checkpoint_default_txt2img.json",
]


@pytest.mark.parametrize("name", EXACT_STATELESS)
async def test_fixture_answered_exactly(api: Api, comfy_fixtures: Path, name: str) -> None:
    no_models(api.root)
    check_envelope(
        await api.replay(envelope(comfy_fixtures, name)), envelope(comfy_fixtures, name), api.root
    )


@pytest.mark.parametrize(
    "name",
    [
        "POST_prompt_invalid_link_to_nonexistent_node.json",
        "POST_prompt_invalid_link_slot_out_of_range.json",
    ],
)
async def test_validation_exceptions(api: Api, comfy_fixtures: Path, name: str) -> None:
    fixture = envelope(comfy_fixtures, name)
    body = check_envelope(await api.replay(fixture), fixture, api.root, body="shape")
    want = fixture["response"]["body"]
    assert body["error"] == want["error"]
    (node_id,) = want["node_errors"]
    got_err, want_err = (
        body["node_errors"][node_id]["errors"][0],
        want["node_errors"][node_id]["errors"][0],
    )
    assert {k: v for k, v in got_err.items() if k != "extra_info"} == {
        k: v for k, v in want_err.items() if k != "extra_info"
    }
    assert got_err["extra_info"]["exception_type"] == want_err["extra_info"]["exception_type"]


async def test_object_info_full_is_the_capture_without_models(
    api: Api, comfy_fixtures: Path, object_info_full: dict[str, Any]
) -> None:
    no_models(api.root)
    status, headers, raw = await api.call("GET", "/object_info")
    assert status == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(raw) == object_info_full


async def test_malformed_json_is_a_bare_500(api: Api, comfy_fixtures: Path) -> None:
    fixture = envelope(comfy_fixtures, "POST_prompt_invalid_malformed_json.json")
    got = await api.call(
        "POST", "/prompt", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    check_envelope(got, fixture, api.root)


async def test_fresh_user_state(api: Api, comfy_fixtures: Path) -> None:
    shutil.rmtree(api.root / "user" / "default")
    check_envelope(
        await api.call("GET", "/users"), envelope(comfy_fixtures, "GET_users.json"), api.root
    )
    missing = envelope(comfy_fixtures, "GET_userdata_workflows_missing_dir.json")
    check_envelope(await api.replay(missing), missing, api.root)


@pytest.mark.parametrize("name", ["GET_system_stats.json", "GET_api_prefix_system_stats.json"])
async def test_system_stats(api: Api, comfy_fixtures: Path, name: str) -> None:
    fixture = envelope(comfy_fixtures, name)
    body = check_envelope(await api.replay(fixture), fixture, api.root, body="none")
    want = fixture["response"]["body"]
    # The capture ran on CPU (device index null); the sandbox is a CUDA machine (index 0).
    assert same_shape(body["system"], want["system"])
    assert set(body["devices"][0]) == set(want["devices"][0])
    assert body["system"]["comfyui_version"] == "0.3.64"
    assert body["system"]["required_frontend_version"] == "1.27.10"
    (device,) = body["devices"]
    assert device["type"] == "cuda" and "NVIDIA GeForce RTX 4090" in device["name"]
    assert 0 < device["vram_free"] <= device["vram_total"]


async def test_index_logs_and_static_misses(api: Api, comfy_fixtures: Path) -> None:
    status, headers, _ = await api.call("GET", "/")
    meta = envelope(comfy_fixtures, "GET_root_index_html.meta.json")["response"]["headers"]
    assert status == 200
    assert (
        headers["Content-Type"] == meta["Content-Type"] and headers["Cache-Control"] == "no-cache"
    )
    status, headers, raw = await api.call("GET", "/internal/logs/raw")
    logs = json.loads(raw)
    assert status == 200 and set(logs) == {"entries", "size"}
    assert any(e["m"].startswith("To see the GUI go to") for e in logs["entries"])
    assert set(logs["size"]) == {"cols", "rows"}
    assert (await api.call("GET", "/api/internal/logs/raw"))[0] == 404
    assert (await api.call("GET", "/api/ws"))[0] in (400, 426)


async def test_prompt_numbers_ids_and_queue_items(api: Api, comfy_fixtures: Path) -> None:
    api.server.knobs.hang("EmptyImage")  # keep everything queued while we look
    valid = envelope(comfy_fixtures, "POST_prompt_valid.json")
    status, _, raw = await api.replay(valid)
    first = json.loads(raw)
    assert status == 200 and first["number"] == 0 and first["node_errors"] == {}
    uuid.UUID(first["prompt_id"])
    invalid = envelope(comfy_fixtures, "POST_prompt_invalid_value_below_min.json")
    assert (await api.replay(invalid))[0] == 400  # still takes a number
    front = envelope(comfy_fixtures, "POST_prompt_front_true.json")
    assert json.loads((await api.replay(front))[2])["number"] == -2
    explicit = envelope(comfy_fixtures, "POST_prompt_explicit_number.json")
    assert json.loads((await api.replay(explicit))[2])["number"] == 0.5
    chosen = envelope(comfy_fixtures, "POST_prompt_client_prompt_id_and_partial_targets.json")
    got = json.loads((await api.replay(chosen))[2])
    assert got == {"prompt_id": "my-own-prompt-id-0001", "number": 3, "node_errors": {}}
    accepted = envelope(
        comfy_fixtures, "POST_prompt_accepted_partially_invalid_one_output_valid_one_invalid.json"
    )
    body = check_envelope(await api.replay(accepted), accepted, api.root, body="shape")
    assert (
        body["node_errors"] == accepted["response"]["body"]["node_errors"] and body["number"] == 4
    )
    wrapped = envelope(comfy_fixtures, "POST_prompt_accepted_value_wrapped___value__.json")
    check_envelope(await api.replay(wrapped), wrapped, api.root, body="shape")

    status, _, raw = await api.call("GET", "/queue")
    queue = json.loads(raw)
    (running,) = queue["queue_running"]
    assert running[:2] == [0, first["prompt_id"]]
    assert running[3] == valid["request"]["json"]["extra_data"] | {
        "client_id": valid["request"]["json"]["client_id"]
    }
    assert sorted(running[4]) == ["4", "5", "7"]
    assert [item[0] for item in queue["queue_pending"]] == [-2, 0.5, 3, 4, 5]
    wrapped_item = next(i for i in queue["queue_pending"] if i[0] == 5)
    assert wrapped_item[2]["1"]["inputs"]["width"] == 64  # validation unwrapped {"__value__": 64}
    assert json.loads((await api.call("GET", "/prompt"))[2]) == {
        "exec_info": {"queue_remaining": 6}
    }
    history = envelope(comfy_fixtures, "GET_history_prompt_id_while_running.json")
    assert (
        json.loads((await api.call("GET", f"/history/{first['prompt_id']}"))[2])
        == history["response"]["body"]
    )
    api.server.knobs.release()


async def test_uploads_view_and_load_image_options(api: Api, comfy_fixtures: Path) -> None:
    red, blue = png((255, 0, 0)), png((0, 0, 255))

    async def upload(data: bytes, name: str, fixture: str, **fields: str) -> Any:
        want = envelope(comfy_fixtures, fixture)
        return check_envelope(
            await api.call("POST", "/upload/image", data=upload_form(data, name, **fields)),
            want,
            api.root,
        )

    await upload(red, "fixture_upload.png", "POST_upload_image.json")
    await upload(red, "fixture_upload.png", "POST_upload_image_same_content_again.json")
    await upload(blue, "fixture_upload.png", "POST_upload_image_same_name_different_content.json")
    await upload(
        blue, "fixture_upload.png", "POST_upload_image_overwrite_true.json", overwrite="true"
    )
    await upload(
        red,
        "fixture_upload.png",
        "POST_upload_image_subfolder.json",
        subfolder="sub/dir",
        type="input",
    )
    await upload(
        red, "fixture_upload.png", "POST_upload_image_traversal_subfolder.json", subfolder="../../"
    )
    await upload(red, "fixture_upload.png", "POST_upload_image_type_temp.json", type="temp")
    await upload(
        b"this is not a png", "corrupt.png", "POST_upload_image_corrupt_file.json", overwrite="true"
    )
    assert (api.root / "input" / "fixture_upload.png").read_bytes() == blue
    assert (api.root / "input" / "fixture_upload (1).png").read_bytes() == blue
    assert (api.root / "input" / "sub" / "dir" / "fixture_upload.png").read_bytes() == red
    form = aiohttp.FormData()
    form.add_field("type", "input")
    missing = envelope(comfy_fixtures, "POST_upload_image_missing_image_field.json")
    check_envelope(await api.call("POST", "/upload/image", data=form), missing, api.root)

    after = envelope(comfy_fixtures, "GET_object_info_LoadImage_after_uploads.json")
    check_envelope(await api.replay(after), after, api.root)

    for name in ("GET_view_annotated_filename.json", "GET_view_input_upload.json"):
        fixture = envelope(comfy_fixtures, name)
        status, headers, raw = await api.replay(fixture)
        want = fixture["response"]["headers"]
        assert status == 200 and headers["Content-Type"] == want["Content-Type"]
        assert headers["Content-Disposition"] == want["Content-Disposition"]
        assert all(h in headers for h in ("ETag", "Last-Modified", "Accept-Ranges"))
        assert "Cache-Control" not in headers
        assert raw == blue
    for name, magic in (
        ("GET_view_channel_rgb.json", b"\x89PNG"),
        ("GET_view_channel_a.json", b"\x89PNG"),
    ):
        fixture = envelope(comfy_fixtures, name)
        raw = check_envelope(await api.replay(fixture), fixture, api.root, body="none")
        assert raw.startswith(magic)
    with Image.open(
        io.BytesIO((await api.replay(envelope(comfy_fixtures, "GET_view_channel_a.json")))[2])
    ) as img:
        assert img.mode == "RGBA" and img.getpixel((0, 0))[3] == 255

    form = aiohttp.FormData()
    form.add_field("image", png((0, 0, 0)), filename="clipspace-mask.png", content_type="image/png")
    form.add_field(
        "original_ref",
        json.dumps({"filename": "fixture_upload.png", "subfolder": "", "type": "input"}),
    )
    form.add_field("type", "input")
    form.add_field("subfolder", "clipspace")
    check_envelope(
        await api.call("POST", "/upload/mask", data=form),
        envelope(comfy_fixtures, "POST_upload_mask.json"),
        api.root,
    )
    assert (api.root / "input" / "clipspace" / "clipspace-mask.png").is_file()


async def test_userdata_and_settings(api: Api, comfy_fixtures: Path) -> None:
    (
        api.root / "user" / "default" / "comfy.settings.json"
    ).unlink()  # the capture listed no settings file
    workflow = b'{"last_node_id": 0, "nodes": [], "links": [], "version": 0.4}'

    async def step(name: str, body: str = "exact", **kw: Any) -> Any:
        fixture = envelope(comfy_fixtures, name)
        return check_envelope(await api.replay(fixture, **kw), fixture, api.root, body=body)

    await step("POST_userdata_workflow.json", data=workflow)
    await step("GET_userdata_file_encoded.json")
    await step("GET_userdata_file_unencoded_slash.json", body="none")
    await step("POST_userdata_workflow_overwrite_false_conflict.json", data=b'{"a": 1}')
    await step("GET_userdata_workflows.json")
    await step("GET_api_prefix_userdata.json", body="shape")
    info = await step("POST_userdata_workflow_full_info.json", body="shape", data=b'{"z": 1}')
    assert info["path"] == "workflows/sub/z.json" and info["size"] == 8
    await step("GET_userdata_workflows_recurse.json")
    await step("GET_userdata_workflows_split.json")
    full = await step("GET_userdata_workflows_full_info.json", body="shape")
    assert [(e["path"], e["size"]) for e in full] == [("x.json", 61), ("sub/z.json", 8)]
    await step("POST_userdata_move.json")
    for name in ("GET_v2_userdata_root.json", "GET_v2_userdata_workflows.json"):
        listing = await step(name, body="shape")
        want = envelope(comfy_fixtures, name)["response"]["body"]
        assert [(e["name"], e["path"], e["type"]) for e in listing] == [
            (e["name"], e["path"], e["type"]) for e in want
        ]
    await step("DELETE_userdata_file.json")
    await step("DELETE_userdata_file_missing.json")

    await step("GET_settings_initial.json")
    await step("POST_settings_single.json", data=b'"value-1"')
    await step("GET_settings_single.json")
    await step("GET_settings_after.json")


async def test_model_files_of_the_second_capture(api: Api, comfy_fixtures: Path) -> None:
    """The second capture's extra model folder, recreated inside the sandbox's own models/."""
    models = api.root / "models"
    no_models(api.root)
    (models / "checkpoints" / "broken_model.safetensors").write_bytes(bytes(range(256)) * 8)
    write_safetensors(
        models / "checkpoints" / "sd15" / "tiny_with_metadata.safetensors",
        {"ss_network_dim": "4", "modelspec.title": "tiny fixture"},
    )
    write_safetensors(models / "loras" / "tiny_lora.safetensors", {})
    write_safetensors(models / "embeddings" / "tiny_embedding.safetensors", {})
    for name in (
        "extra_GET_models_checkpoints.json",
        "extra_GET_models_loras.json",
        "extra_GET_embeddings.json",
        "extra_GET_object_info_CheckpointLoaderSimple.json",
        "extra_GET_view_metadata.json",
        "extra_POST_prompt_invalid_missing_lora_and_backslash_ckpt.json",
    ):
        fixture = envelope(comfy_fixtures, name)
        check_envelope(await api.replay(fixture), fixture, api.root)
    # The capture's files sat in a second search path (pathIndex 1); here they are in the first.
    fixture = envelope(comfy_fixtures, "extra_GET_experiment_models_checkpoints.json")
    entries = check_envelope(await api.replay(fixture), fixture, api.root, body="shape")
    assert [(e["name"], e["pathIndex"]) for e in entries] == [
        ("broken_model.safetensors", 0),
        ("sd15/tiny_with_metadata.safetensors", 0),
    ]
    assert entries[0]["size"] == 2048


async def test_validation_failures_are_logged_like_comfyui(api: Api, comfy_fixtures: Path) -> None:
    tail = envelope(comfy_fixtures, "GET_internal_logs_raw_tail.json")["entries"]
    await api.replay(envelope(comfy_fixtures, "POST_prompt_invalid_value_wrong_type.json"))
    await api.replay(envelope(comfy_fixtures, "POST_prompt_invalid_combo_value_not_in_list.json"))
    logs = json.loads((await api.call("GET", "/internal/logs/raw"))[2])["entries"]
    assert [e["m"] for e in logs[-12:]] == [e["m"] for e in tail[:12]]
    assert (api.root / "comfyui.log").read_text().endswith("".join(e["m"] for e in tail[:12]))


async def test_history_paging_delete_and_clear(api: Api, comfy_fixtures: Path) -> None:
    ids = []
    for color in (1, 2, 3):
        prompt = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
            },
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
        ids.append(
            json.loads((await api.call("POST", "/prompt", json={"prompt": prompt}))[2])["prompt_id"]
        )
    for _ in range(200):
        if json.loads((await api.call("GET", "/prompt"))[2])["exec_info"]["queue_remaining"] == 0:
            break
        await asyncio.sleep(0.02)
    history = json.loads((await api.call("GET", "/history"))[2])
    assert list(history) == ids
    assert list(json.loads((await api.call("GET", "/history?max_items=2"))[2])) == ids[1:]
    assert list(json.loads((await api.call("GET", "/history?max_items=1&offset=0"))[2])) == ids[:1]
    assert list(json.loads((await api.call("GET", "/history?offset=1"))[2])) == ids[1:]
    entry = history[ids[0]]
    want = envelope(comfy_fixtures, "GET_history_max_items_2.json")["response"]["body"]
    assert same_shape(entry, list(want.values())[1])  # the capture's two-node prompt
    await api.call("POST", "/history", json={"delete": [ids[1]]})
    assert list(json.loads((await api.call("GET", "/history"))[2])) == [ids[0], ids[2]]
    await api.call("POST", "/api/history", json={"clear": True})
    cleared = envelope(comfy_fixtures, "GET_history_after_clear.json")
    check_envelope(await api.replay(cleared), cleared, api.root)


@pytest.mark.parametrize("name", ["GET_workflow_templates.json", "GET_i18n.meta.json"])
async def test_empty_dictionaries(api: Api, comfy_fixtures: Path, name: str) -> None:
    fixture = envelope(comfy_fixtures, name)
    status, headers, raw = await api.replay(fixture)
    assert (
        status == 200 and headers["Content-Type"] == fixture["response"]["headers"]["Content-Type"]
    )
    assert json.loads(raw) == {}
