"""`models pull|ls|rm` against a ready sandbox instance over SSH, downloading from a loopback
model server with curl on the instance."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from tests.models.conftest import CIVITAI_TOKEN, HF_TOKEN, World, blob, grep_tree

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.errors import ChecksumMismatch, DiskFull, DownloadFailed, UnsafeSource, UsageError
from comfyfleet.remote.commands import run
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.models import (
    PullProgress,
    list_models,
    plan_pull,
    pull,
    remove_model,
)
from comfyfleet.services.models_pull import model_files
from comfyfleet.services.models_source import Tokens, source_id
from comfyfleet.services.remote_ops import open_session
from comfyfleet.state import EventKind

pytestmark = pytest.mark.asyncio(loop_scope="module")
NO_TOKENS = Tokens()


def serve(world: World, name: str, seed: int, size: int = 200_000) -> str:
    world.server.blobs[name] = blob(seed, size)
    return f"{world.server.url}/files/{name}"


async def listed(world: World, folder: str) -> list[str]:
    row = world.cloud.db.instances.find(world.ref)
    endpoint = comfy_endpoint(world.cloud, row)
    assert endpoint is not None
    async with ComfyClient(endpoint.url, token=endpoint.token) as client:
        return await client.model_files(folder)


def index(world: World) -> dict[str, dict[str, object]]:
    path = world.comfy_dir / "models" / ".comfyfleet-models.json"
    files: dict[str, dict[str, object]] = json.loads(path.read_text())["files"]
    return files


def with_settings(world: World, **env: str) -> Cloud:
    config = dataclasses.replace(world.cloud.config, settings=world.settings(**env))
    return dataclasses.replace(world.cloud, config=config)


async def test_pull_lands_verified_in_its_folder_and_never_twice(world: World) -> None:
    url = serve(world, "detail.safetensors", 1)
    sha = world.server.sha("detail.safetensors")
    planned = await plan_pull(world.cloud.settings, url, folder="loras", sha256=sha.upper())
    seen: list[PullProgress] = []
    result = await pull(world.cloud, world.ref, planned.source, on_progress=seen.append)
    assert result.status == "downloaded" and result.verified
    assert result.path == "loras/detail.safetensors" and result.sha256 == sha
    placed = world.comfy_dir / "models" / "loras" / "detail.safetensors"
    assert placed.read_bytes() == world.server.blobs["detail.safetensors"]
    assert not placed.with_name("detail.safetensors.part").exists()
    assert {"check", "download", "verify", "done"} <= {p.stage for p in seen}
    meter = [p for p in seen if p.stage == "download" and not p.message]
    assert meter and meter[-1].done == meter[-1].total == 200_000, "curl's meter, parsed"
    assert "detail.safetensors" in await listed(world, "loras")
    assert index(world)["loras/detail.safetensors"]["sha256"] == sha
    events = world.cloud.db.instances.events(world.cloud.db.instances.find(world.ref).id)
    pulled = [e for e in events if e.kind == EventKind.MODEL_PULLED]
    assert pulled[-1].detail["sha256"] == sha and pulled[-1].detail["source"] == url

    requests = len(world.server.hits)
    again = await pull(world.cloud, world.ref, planned.source)
    assert again.status == "present" and again.sha256 == sha
    assert len(world.server.hits) == requests, "a present file is never asked for again"
    unhashed = await plan_pull(world.cloud.settings, url, folder="loras")
    assert (await pull(world.cloud, world.ref, unhashed.source)).status == "present"
    assert len(world.server.hits) == requests


async def test_hugging_face_hash_comes_from_the_hub_and_gated_repos_take_the_token(
    world: World,
) -> None:
    world.server.blobs["unet-fp8.safetensors"] = blob(2, 150_000)
    world.server.hf["acme/flux/split/unet-fp8.safetensors"] = "unet-fp8.safetensors"
    world.server.hf_gated["acme/flux"] = HF_TOKEN
    planned = await plan_pull(
        world.cloud.settings, "hf://acme/flux/split/unet-fp8.safetensors", folder="unet"
    )
    assert planned.directory == "unet" and planned.source.folder == "diffusion_models"
    with pytest.raises(DownloadFailed, match="needs a token") as refused:
        await pull(world.cloud, world.ref, planned.source, tokens=NO_TOKENS)
    assert refused.value.status == 401 and "HF_TOKEN" in (refused.value.hint or "")
    assert not (world.comfy_dir / "models" / "unet" / "unet-fp8.safetensors.part").exists()

    result = await pull(world.cloud, world.ref, planned.source, tokens=Tokens(HF_TOKEN))
    assert result.verified, "Hugging Face's X-Linked-Etag is the file's sha256"
    assert result.sha256 == world.server.sha("unet-fp8.safetensors")
    assert "unet-fp8.safetensors" in await listed(world, "diffusion_models")
    resolves = [h for h in world.server.hits if "/resolve/" in h.path]
    assert resolves[-1].authorization == f"Bearer {HF_TOKEN}"


async def test_interrupted_pull_resumes_with_a_range_request(world: World) -> None:
    url = serve(world, "resume.safetensors", 3, 400_000)
    world.server.cut_once.add("resume.safetensors")
    no_retry = with_settings(world, COMFYFLEET_DOWNLOADS__RETRIES="0")
    planned = await plan_pull(no_retry.settings, url, folder="checkpoints")
    with pytest.raises(DownloadFailed) as cut:
        await pull(no_retry, world.ref, planned.source)
    assert "pull again to continue" in (cut.value.hint or "")
    part = world.comfy_dir / "models" / "checkpoints" / "resume.safetensors.part"
    kept = part.stat().st_size
    assert 0 < kept < 400_000
    assert "resume.safetensors" not in await listed(world, "checkpoints")

    result = await pull(no_retry, world.ref, planned.source)
    assert result.status == "downloaded" and result.resumed_from == kept
    assert world.server.gets("resume.safetensors")[-1].range == f"bytes={kept}-"
    placed = part.with_name("resume.safetensors")
    assert placed.read_bytes() == world.server.blobs["resume.safetensors"]


async def test_a_dropped_transfer_is_retried_within_one_pull(world: World) -> None:
    url = serve(world, "healed.safetensors", 4, 300_000)
    world.server.cut_once.add("healed.safetensors")
    planned = await plan_pull(world.cloud.settings, url, folder="vae")
    messages: list[str] = []
    result = await pull(
        world.cloud, world.ref, planned.source, on_progress=lambda p: messages.append(p.message)
    )
    assert result.attempts == 2 and result.status == "downloaded"
    assert any("resuming at" in m for m in messages)
    gets = world.server.gets("healed.safetensors")
    assert gets[0].range is None and gets[-1].range is not None


async def test_checksum_mismatch_deletes_the_download_and_says_so(world: World) -> None:
    url = serve(world, "tampered.safetensors", 5)
    world.server.wrong.add("tampered.safetensors")
    expected = world.server.sha("tampered.safetensors")
    planned = await plan_pull(world.cloud.settings, url, folder="loras", sha256=expected)
    with pytest.raises(ChecksumMismatch) as bad:
        await pull(world.cloud, world.ref, planned.source)
    assert bad.value.expected == expected and bad.value.got != expected
    assert expected in bad.value.message and bad.value.got in bad.value.message
    assert "deleted" in bad.value.message
    folder = world.comfy_dir / "models" / "loras"
    assert not list(folder.glob("tampered*"))
    assert "tampered.safetensors" not in index(world)


async def test_civitai_token_reaches_the_server_only(world: World) -> None:
    world.server.blobs["styleA.safetensors"] = blob(6, 250_000)
    world.server.add_civitai(4242, "styleA.safetensors", model=77, model_type="LORA")
    world.server.civitai_token = CIVITAI_TOKEN
    planned = await plan_pull(world.cloud.settings, "civitai:77@4242")
    assert planned.source.folder == "loras", "Civitai's model type gives the folder"
    assert planned.source.filename == "styleA.safetensors"
    assert planned.source.sha256 == world.server.sha("styleA.safetensors")
    world.server.civitai_models[77] = {"id": 77, "modelVersions": [{"id": 4242}, {"id": 1}]}
    for text in ("civitai:77", "https://civitai.com/models/77?modelVersionId=4242"):
        same = await plan_pull(world.cloud.settings, text)
        assert same.source.url == planned.source.url and same.source.spec == "civitai:77@4242"

    before = len(world.server.hits)
    with pytest.raises(UsageError, match="needs a Civitai API token"):
        await pull(world.cloud, world.ref, planned.source, tokens=NO_TOKENS)
    assert len(world.server.hits) == before, "no token: the instance is not even contacted"
    with pytest.raises(DownloadFailed, match="Civitai refused") as refused:
        await pull(world.cloud, world.ref, planned.source, tokens=Tokens(civitai="wrong-token-1"))
    assert refused.value.status == 401

    stall = world.server.stall["styleA.safetensors"] = asyncio.Event()
    task = asyncio.create_task(
        pull(world.cloud, world.ref, planned.source, tokens=Tokens(civitai=CIVITAI_TOKEN))
    )
    try:
        stalled = world.server.stalled.setdefault("styleA.safetensors", asyncio.Event())
        await asyncio.wait_for(stalled.wait(), 30)
        async with open_session(world.cloud, world.ref) as session:
            ps = (await run(session.conn, "ps -eo args", check=True)).stdout
        assert "curl --disable --config -" in ps, "the download runs while we look"
        assert CIVITAI_TOKEN not in ps
        assert grep_tree(world.host_root, CIVITAI_TOKEN.encode()) == []
    finally:
        stall.set()
    result = await task
    assert result.verified and result.path == "loras/styleA.safetensors"
    downloads = [h for h in world.server.hits if "/api/download/" in h.path]
    assert downloads[-1].authorization == f"Bearer {CIVITAI_TOKEN}"
    assert grep_tree(world.host_root, CIVITAI_TOKEN.encode()) == []
    assert grep_tree(world.base / "data", CIVITAI_TOKEN.encode()) == []
    assert grep_tree(world.base / "data", b"wrong-token-1") == []


async def test_shell_metacharacters_are_refused_before_anything_runs(world: World) -> None:
    before = len(world.server.hits)
    marker = world.base / "pwned"
    for text in (
        f"{world.server.url}/files/x.safetensors;touch {marker}",
        f"{world.server.url}/files/$(touch {marker}).safetensors",
        f"{world.server.url}/files/`id`.safetensors",
        f'{world.server.url}/files/a".safetensors',
    ):
        with pytest.raises(UnsafeSource):
            await plan_pull(world.cloud.settings, text, folder="loras")
    url = serve(world, "ok.safetensors", 7)
    for name in (f"x;touch {marker}.safetensors", "../../escape.safetensors", "$(id).pt"):
        with pytest.raises(UnsafeSource):
            await plan_pull(world.cloud.settings, url, folder="loras", name=name)
    with pytest.raises(UsageError, match="not a ComfyUI model folder"):
        await plan_pull(world.cloud.settings, url, folder="custom_nodes")
    for path in ("../../etc/passwd", "loras/../../x", "/etc/passwd", "nowhere/x.safetensors"):
        with pytest.raises(UsageError):
            await remove_model(world.cloud, world.ref, path)
    assert len(world.server.hits) == before and not marker.exists()


async def test_brackets_in_a_url_are_text_not_a_curl_range(world: World) -> None:
    url = serve(world, "glob[1-3].safetensors", 13)
    with pytest.raises(UnsafeSource):  # a name taken from this URL is no plain file name
        await plan_pull(world.cloud.settings, url, folder="loras")
    planned = await plan_pull(world.cloud.settings, url, folder="loras", name="glob.safetensors")
    result = await pull(world.cloud, world.ref, planned)
    assert result.sha256 == world.server.sha("glob[1-3].safetensors")
    assert len([h for h in world.server.hits if "glob" in h.path and h.method == "GET"]) == 1


async def test_disk_full_is_refused_before_downloading(world: World) -> None:
    url = serve(world, "giant.safetensors", 8)
    world.server.huge.add("giant.safetensors")
    planned = await plan_pull(world.cloud.settings, url, folder="checkpoints")
    with pytest.raises(DiskFull) as full:
        await pull(world.cloud, world.ref, planned.source)
    assert full.value.needed == 10**18 and full.value.free is not None
    assert "free" in full.value.message and "needs" in full.value.message
    assert world.server.gets("giant.safetensors") == [], "only the HEAD was sent"
    assert not list((world.comfy_dir / "models" / "checkpoints").glob("giant*"))


async def test_a_cdn_refusing_head_still_gets_its_size_checked_first(world: World) -> None:
    # Civitai redirects to a signed CDN URL, signed for GET: its HEAD is refused (403). The
    # first byte's answer (Range: bytes=0-0) gives the size for the free-space check.
    world.server.civitai_token = CIVITAI_TOKEN
    tokens = Tokens(civitai=CIVITAI_TOKEN)
    world.server.blobs["signed.safetensors"] = blob(21, 150_000)
    world.server.add_civitai(5151, "signed.safetensors", model=51)
    world.server.blobs["vast.safetensors"] = blob(22, 1_000)
    world.server.add_civitai(5252, "vast.safetensors", model=52)
    world.server.head_refused |= {"signed.safetensors", "vast.safetensors"}
    world.server.huge.add("vast.safetensors")
    too_big = await plan_pull(world.cloud.settings, "civitai:52@5252")
    with pytest.raises(DiskFull) as full:
        await pull(world.cloud, world.ref, too_big.source, tokens=tokens)
    assert full.value.needed == 10**18
    assert [h.range for h in world.server.gets("vast.safetensors")] == ["bytes=0-0"]
    fits = await plan_pull(world.cloud.settings, "civitai:51@5151")
    result = await pull(world.cloud, world.ref, fits.source, tokens=tokens)
    assert result.verified and result.size == 150_000
    ranges = [h.range for h in world.server.gets("signed.safetensors")]
    assert ranges[0] == "bytes=0-0" and len(ranges) == 2  # the probe, then the download


async def test_a_write_failure_removes_the_partial_file(world: World) -> None:
    url = serve(world, "nospace.safetensors", 9)
    planned = await plan_pull(world.cloud.settings, url, folder="loras")
    rel = "loras/nospace.safetensors"
    async with open_session(world.cloud, world.ref) as session:
        files = model_files(session.conn, await session.layout(world.cloud))
        await files.begin(rel, {"source_id": source_id(planned.source)})
    part = world.comfy_dir / "models" / "loras" / "nospace.safetensors.part"
    part.symlink_to("/dev/full")  # every write fails as on a full disk
    with pytest.raises(DiskFull, match="partial file was removed") as full:
        await pull(world.cloud, world.ref, planned.source)
    assert full.value.free is not None
    assert not part.is_symlink() and not part.exists()
    assert not part.with_name("nospace.safetensors").exists()


async def test_an_unrelated_file_in_the_way_is_kept(world: World) -> None:
    url = serve(world, "mine.safetensors", 10)
    theirs = world.comfy_dir / "models" / "loras" / "mine.safetensors"
    theirs.write_bytes(b"the user's own file")
    planned = await plan_pull(world.cloud.settings, url, folder="loras")
    with pytest.raises(UsageError, match="not placed by comfyfleet"):
        await pull(world.cloud, world.ref, planned.source)
    sha = world.server.sha("mine.safetensors")
    hashed = await plan_pull(world.cloud.settings, url, folder="loras", sha256=sha)
    with pytest.raises(UsageError, match="other content"):
        await pull(world.cloud, world.ref, hashed.source)
    assert theirs.read_bytes() == b"the user's own file"


async def test_a_file_changed_after_placement_is_checked_again(world: World) -> None:
    url = serve(world, "edited.safetensors", 12)
    sha = world.server.sha("edited.safetensors")
    planned = await plan_pull(world.cloud.settings, url, folder="upscale_models", sha256=sha)
    assert (await pull(world.cloud, world.ref, planned)).status == "downloaded"
    placed = world.comfy_dir / "models" / "upscale_models" / "edited.safetensors"
    placed.write_bytes(blob(99, 200_000))  # same size, other bytes, newer time
    with pytest.raises(UsageError, match="other content"):
        await pull(world.cloud, world.ref, planned)
    assert len(world.server.gets("edited.safetensors")) == 1


async def test_a_second_pull_of_a_file_being_downloaded_waits_its_turn(world: World) -> None:
    url = serve(world, "busy.safetensors", 14)
    planned = await plan_pull(world.cloud.settings, url, folder="loras")
    stall = world.server.stall["busy.safetensors"] = asyncio.Event()
    first = asyncio.create_task(pull(world.cloud, world.ref, planned))
    try:
        stalled = world.server.stalled.setdefault("busy.safetensors", asyncio.Event())
        await asyncio.wait_for(stalled.wait(), 30)
        with pytest.raises(DownloadFailed, match="another pull"):
            await pull(world.cloud, world.ref, planned)
    finally:
        stall.set()
    result = await first
    assert result.status == "downloaded"
    placed = world.comfy_dir / "models" / "loras" / "busy.safetensors"
    assert placed.read_bytes() == world.server.blobs["busy.safetensors"]


async def test_side_by_side_pulls_keep_every_index_entry(world: World) -> None:
    names = [f"pair{i}.safetensors" for i in range(3)]
    sources = [
        (await plan_pull(world.cloud.settings, serve(world, n, 20 + i), folder="embeddings")).source
        for i, n in enumerate(names)
    ]
    results = await asyncio.gather(*(pull(world.cloud, world.ref, s) for s in sources))
    assert {r.status for r in results} == {"downloaded"}
    recorded = index(world)
    assert all(f"embeddings/{n}" in recorded for n in names)


async def test_ls_and_rm(world: World) -> None:
    url = serve(world, "t5-small.safetensors", 11)
    planned = await plan_pull(world.cloud.settings, url, folder="clip")
    assert planned.directory == "clip" and planned.source.folder == "text_encoders"
    await pull(world.cloud, world.ref, planned)
    files = {f.path: f for f in await list_models(world.cloud, world.ref)}
    clip = files["clip/t5-small.safetensors"]
    assert clip.folder == "text_encoders" and clip.sha256 == world.server.sha(clip.name)
    assert clip.source == url and clip.size == 200_000
    placeholder = files["checkpoints/v1-5-pruned-emaonly-fp16.safetensors"]
    assert placeholder.sha256 is None and placeholder.source is None
    only = await list_models(world.cloud, world.ref, "text_encoders")
    assert {f.folder for f in only} == {"text_encoders"}

    removed = await remove_model(world.cloud, world.ref, "text_encoders/t5-small.safetensors")
    assert removed.path == "clip/t5-small.safetensors" and removed.had_file
    assert not (world.comfy_dir / "models" / "clip" / "t5-small.safetensors").exists()
    assert "clip/t5-small.safetensors" not in index(world)
    assert "t5-small.safetensors" not in await listed(world, "text_encoders")
    with pytest.raises(UsageError, match="no model file"):
        await remove_model(world.cloud, world.ref, "clip/t5-small.safetensors")
    events = world.cloud.db.instances.events(world.cloud.db.instances.find(world.ref).id)
    assert any(e.kind == EventKind.MODEL_REMOVED for e in events)
