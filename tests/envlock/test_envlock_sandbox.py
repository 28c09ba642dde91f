"""`env lock` on a prepared sandbox instance and `env apply` to a fresh one (real SSH, git,
pip and downloads), then a lock with another torch and a tampered lock."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from tests.nodes.packs import commit, git
from tests.prepare.flows import CHECKPOINT, PACK

from comfyfleet.errors import UsageError
from comfyfleet.services.envlock import load_lock, lock_env
from comfyfleet.services.envlock_apply import apply_env
from comfyfleet.services.nodes import install_pack
from comfyfleet.state import EventKind

from .conftest import EXTRA_PIP, Locked, venv_versions

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

CHANGES = (EventKind.NODES, EventKind.MODEL_PULLED)


def entries(locked: Locked, ref: str) -> list[str]:
    return sorted(p.name for p in (locked.world.comfy_dir(ref) / "custom_nodes").iterdir())


async def test_the_lock_records_the_environment(locked: Locked) -> None:
    lock = load_lock(locked.path)  # what was written reads back the same
    assert lock == locked.lock
    assert lock.instance["name"] == "alpha" and lock.created_at
    assert lock.comfyui.commit is None and lock.comfyui.version  # no git checkout here
    packs = {p.name: p for p in lock.custom_nodes}
    assert packs[PACK].url and packs[PACK].commit and len(packs[PACK].commit) == 40
    assert packs["spare_pack.disabled"].disabled and packs["spare_pack.disabled"].commit
    assert lock.protected["torch"] == "2.8.0+cu128" and "xformers" in lock.protected
    assert {"onnx==1.19.0", "einops==0.8.1", EXTRA_PIP} <= set(lock.pip)
    models = {m.path: m for m in lock.models}
    ours = models[f"checkpoints/{CHECKPOINT}"]
    assert ours.hashed == "index" and ours.source and ours.source.endswith(CHECKPOINT)
    assert ours.sha256 == locked.world.server.sha(CHECKPOINT)
    image = models["checkpoints/v1-5-pruned-emaonly-fp16.safetensors"]
    assert image.hashed == "instance" and image.source is None and image.sha256
    assert any("hashed on the instance" in n for n in lock.notes)


async def test_a_dry_run_says_what_it_would_do_and_changes_nothing(locked: Locked) -> None:
    world = locked.world
    before = (entries(locked, "beta"), venv_versions(world, "beta"), await world.comfy_pids("beta"))
    events = len(world.events("beta", *CHANGES))
    report = await apply_env(world.with_settings(), "beta", locked.lock, dry_run=True)
    assert report.dry_run and not report.ok and report.exit_code == 1
    planned = {(a.action, a.item) for a in report.actions}
    assert {
        ("install-pack", f"custom_nodes/{PACK}"),
        ("install-pack", "custom_nodes/spare_pack"),
        ("pip-install", f"pip/{EXTRA_PIP.split('==')[0]}"),
        ("pull", f"models/checkpoints/{CHECKPOINT}"),
    } <= planned
    assert {a.status for a in report.actions} == {"planned"}
    rows = {d.item: d.row for d in report.remaining}
    assert rows[f"custom_nodes/{PACK}"][2] == "-"
    after = (entries(locked, "beta"), venv_versions(world, "beta"), await world.comfy_pids("beta"))
    assert after == before
    assert len(world.events("beta", *CHANGES)) == events
    assert not (world.comfy_dir("beta") / "models" / "checkpoints" / CHECKPOINT).exists()


async def test_apply_reproduces_the_lock_on_a_fresh_instance(locked: Locked) -> None:
    world = locked.world
    protected = {k: v for k, v in venv_versions(world, "beta").items() if k.startswith("torch")}
    lines: list[str] = []
    report = await apply_env(world.with_settings(), "beta", locked.lock, on_line=lines.append)
    assert report.ok and report.remaining == [] and report.exit_code == 0, report.to_json()
    assert sum("restarting ComfyUI" in line for line in lines) == 1
    assert entries(locked, "beta") == entries(locked, "alpha")
    assert "spare_pack.disabled" in entries(locked, "beta")
    versions = venv_versions(world, "beta")
    assert versions["piexif"] == "1.1.3" and versions["onnx"] == "1.19.0"
    assert {k: v for k, v in versions.items() if k.startswith("torch")} == protected
    model = world.comfy_dir("beta") / "models" / "checkpoints" / CHECKPOINT
    assert model.read_bytes() == world.server.blobs[CHECKPOINT]
    # ComfyUI loaded the enabled pack; the disabled one stays unloaded
    nodes = [e for e in world.events("beta", EventKind.NODES) if e.get("action") == "install"]
    assert {e["pack"] for e in nodes} == {PACK, "spare_pack"}

    # applying again finds nothing to do
    events = len(world.events("beta", *CHANGES))
    pids = await world.comfy_pids("beta")
    again = await apply_env(world.with_settings(), "beta", locked.lock)
    assert again.ok and again.actions == [] and again.restart_seconds is None
    assert len(world.events("beta", *CHANGES)) == events
    assert await world.comfy_pids("beta") == pids


async def test_drift_is_put_back(locked: Locked) -> None:
    """A pack moved to a newer commit, a disabled pack enabled by hand: both undone."""
    world = locked.world
    commit(locked.repos / PACK, {"later.txt": "x"}, "later")
    cloud = world.with_settings()
    moved = await install_pack(cloud, "beta", locked_url(locked, PACK), git_ref="main")
    assert moved.status == "updated"
    folder = world.comfy_dir("beta") / "custom_nodes"
    (folder / "spare_pack.disabled").rename(folder / "spare_pack")
    report = await apply_env(cloud, "beta", locked.lock)
    assert report.ok, report.to_json()
    assert {(a.action, a.item, a.status) for a in report.actions} == {
        ("install-pack", f"custom_nodes/{PACK}", "done"),
        ("disable-pack", "custom_nodes/spare_pack", "done"),
    }
    assert report.restart_seconds is not None
    assert entries(locked, "beta") == entries(locked, "alpha")
    locked_commit = next(p.commit for p in locked.lock.custom_nodes if p.name == PACK)
    assert git(folder / PACK, "rev-parse", "HEAD") == locked_commit


def locked_url(locked: Locked, name: str) -> str:
    url = next(p.url for p in locked.lock.custom_nodes if p.name == name)
    assert url is not None
    return url


async def test_a_lock_with_another_torch_is_reported_not_applied(
    locked: Locked, tmp_path: Path
) -> None:
    world = locked.world
    data = json.loads(locked.path.read_text())
    data["protected"]["torch"] = "2.9.0+cu128"
    data["pip"] = [
        "torch==2.9.0+cu128" if line.startswith("torch==") else line for line in data["pip"]
    ]
    other = tmp_path / "other-torch.json"
    other.write_text(json.dumps(data))
    before = venv_versions(world, "beta")
    pids = await world.comfy_pids("beta")
    report = await apply_env(world.with_settings(), "beta", load_lock(other))
    assert not report.ok and report.exit_code == 1
    assert [d.row for d in report.remaining] == [("protected/torch", "2.9.0+cu128", "2.8.0+cu128")]
    assert report.actions == [] and report.restart_seconds is None
    assert venv_versions(world, "beta") == before
    assert await world.comfy_pids("beta") == pids


async def test_a_tampered_lock_is_refused_before_anything_changes(
    locked: Locked, tmp_path: Path
) -> None:
    data = json.loads(locked.path.read_text())
    pack = next(p for p in data["custom_nodes"] if p["name"] == PACK)
    pack["url"] = "file:///tmp/x;rm -rf /"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"custom_nodes\[\d\]\.url"):
        load_lock(bad)
    data["version"] = 9
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="format version 9"):
        load_lock(bad)
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="not JSON"):
        load_lock(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_lock(tmp_path / "missing.json")
    # a source that is no usable URL stops apply before anything is done
    data = json.loads(locked.path.read_text())
    for model in data["models"]:
        for key in ("path", "name"):
            model[key] = model[key].replace(CHECKPOINT, "other_model.safetensors")
        if model["source"]:
            model["source"] = "ftp://example.com/other_model.safetensors"
    bad.write_text(json.dumps(data))
    world = locked.world
    events = len(world.events("beta", *CHANGES))
    with pytest.raises(UsageError, match="ftp://"):
        await apply_env(world.with_settings(), "beta", load_lock(bad))
    assert len(world.events("beta", *CHANGES)) == events


async def test_comfyui_is_known_by_its_commit_in_a_checkout(locked: Locked) -> None:
    world = locked.world
    comfy = world.comfy_dir("beta")
    origin = "https://github.com/comfyanonymous/ComfyUI"
    git(comfy.parent, "init", "-q", "-b", "master", str(comfy))
    try:
        git(comfy, "commit", "-q", "--allow-empty", "-m", "v0.3.64")
        git(comfy, "remote", "add", "origin", origin)
        head = git(comfy, "rev-parse", "HEAD")
        cloud = world.with_settings()
        lock = await lock_env(cloud, "beta")
        assert (lock.comfyui.commit, lock.comfyui.origin) == (head, origin)
        assert lock.comfyui.version == locked.lock.comfyui.version
        # alpha's ComfyUI is no checkout: the commit is reported there, never changed
        report = await apply_env(cloud, "alpha", lock, dry_run=True)
        rows = [d.row for d in report.remaining if d.section == "comfyui"]
        version = locked.lock.comfyui.version
        assert rows == [("ComfyUI", head, f"version {version} (not a git checkout)")]
    finally:
        shutil.rmtree(comfy / ".git")


async def test_hashes_are_reused_until_a_file_changes(locked: Locked) -> None:
    cloud = locked.world.with_settings()
    extra = locked.world.comfy_dir("alpha") / "models" / "loras" / "hand-made.safetensors"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_bytes(b"first content " * 1000)
    rel = "loras/hand-made.safetensors"
    try:
        said: list[str] = []
        first = {m.path: m for m in (await lock_env(cloud, "alpha", on_line=said.append)).models}
        assert first[rel].hashed == "instance" and any("hashing 1 model" in s for s in said)
        assert first[rel].sha256 == hashlib.sha256(extra.read_bytes()).hexdigest()
        said.clear()
        second = {m.path: m for m in (await lock_env(cloud, "alpha", on_line=said.append)).models}
        assert second[rel].hashed == "index" and second[rel].sha256 == first[rel].sha256
        assert not any("hashing" in s for s in said)  # nothing hashed again
        # Rewritten with other bytes of the same size: the recorded sha256 no longer holds.
        extra.write_bytes(b"other content " * 1000)
        os.utime(extra, (time.time() + 5, time.time() + 5))
        third = {m.path: m for m in (await lock_env(cloud, "alpha")).models}
        assert third[rel].hashed == "instance"
        assert third[rel].sha256 == hashlib.sha256(extra.read_bytes()).hexdigest()
        assert third[rel].sha256 != first[rel].sha256
    finally:
        extra.unlink()
