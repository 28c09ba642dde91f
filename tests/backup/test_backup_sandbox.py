"""Backups of sandbox ComfyUI servers over loopback: commits, deletions, scrubbing, restores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import Settings, load_settings
from comfyfleet.errors import UsageError
from comfyfleet.sandbox.comfy.server import SandboxComfy
from comfyfleet.services.backup import backup_source, held_workflows, url_source
from comfyfleet.services.backup_guard import guarded
from comfyfleet.services.backup_repo import BackupRepo
from comfyfleet.services.backup_restore import restore
from comfyfleet.services.targets import Target
from comfyfleet.util.clock import SystemClock

from .test_scrub import SECRETS, ui_workflow

GIT = shutil.which("git")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        env={"COMFYFLEET_PATHS__CONFIG_DIR": str(tmp_path / "config")},
        config_file=tmp_path / "none.toml",
    )


@pytest.fixture
async def other_server(tmp_path: Path) -> AsyncIterator[SandboxComfy]:
    async with SandboxComfy(root=tmp_path / "other-root", speed=50.0) as server:
        yield server


def source_of(server: SandboxComfy) -> Any:
    return url_source(Target(server.url))


async def put(server: SandboxComfy, files: dict[str, bytes]) -> None:
    async with ComfyClient(server.url) as client:
        for path, data in files.items():
            await client.userdata_write(f"workflows/{path}", data)


async def remove(server: SandboxComfy, path: str) -> None:
    async with ComfyClient(server.url) as client:
        await client.userdata_delete(f"workflows/{path}")


def wf(label: str, *extra: Any) -> bytes:
    return (json.dumps(ui_workflow(label, *extra), indent=2) + "\n").encode()


def repo_files(path: Path, folder: str, rev: str | None = None) -> dict[str, bytes]:
    repo = BackupRepo.open(path, create=False)
    assert repo is not None
    with repo:
        blobs = repo.files(repo.resolve(rev), folder)
        return {p: repo.read(b) for p, b in blobs.items()}


def commits(path: Path) -> int:
    repo = BackupRepo.open(path, create=False)
    assert repo is not None
    with repo:
        count, head = 0, repo.head()
        while head is not None:
            count += 1
            parents = repo._commit(head).parents
            head = parents[0] if parents else None
        return count


async def test_backup_commits_changes_only_and_follows_deletions(
    comfy_sandbox: SandboxComfy, other_server: SandboxComfy, settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "backups"
    files = {
        "txt2img.json": wf("top"),
        "portraits/face.json": wf("face"),
        "portraits/old/v1 draft.json": wf("draft"),
    }
    await put(comfy_sandbox, files)
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{comfy_sandbox.url}/settings/Comfy.Locale", json="fr")
        assert r.status_code == 200
    first = await backup_source(source_of(comfy_sandbox), repo, settings)
    folder = f"127.0.0.1_{comfy_sandbox.port}"
    assert first.folder == folder and first.commit is not None
    assert (
        first.added == sorted(["workflows/" + p for p in files] + ["comfy.settings.json"])
        and first.workflows == 3
    )
    stored = repo_files(repo, folder)
    assert {p: stored[f"workflows/{p}"] for p in files} == files  # byte for byte
    assert json.loads(stored["comfy.settings.json"]) == {"Comfy.Locale": "fr"}
    index = json.loads((repo / "comfyfleet-index.json").read_text())
    assert index["folders"][folder] == {"kind": "url", "url": comfy_sandbox.url}

    again = await backup_source(source_of(comfy_sandbox), repo, settings)
    assert again.commit is None and commits(repo) == 1

    other = await backup_source(source_of(other_server), repo, settings)
    assert other.folder != folder and other.commit is not None

    await put(comfy_sandbox, {"portraits/face.json": wf("face v2")})
    await remove(comfy_sandbox, "portraits/old/v1 draft.json")
    changed = await backup_source(source_of(comfy_sandbox), repo, settings)
    assert changed.commit is not None and commits(repo) == 3
    assert changed.changed == ["workflows/portraits/face.json"]
    assert changed.deleted == ["workflows/portraits/old/v1 draft.json"]
    assert "workflows/portraits/old/v1 draft.json" not in repo_files(repo, folder)
    assert repo_files(repo, other.folder) == repo_files(repo, other.folder, "HEAD~1")
    assert not (repo / folder / "workflows" / "portraits" / "old").exists()
    if GIT:
        log = subprocess.run(
            [GIT, "-C", str(repo), "log", "-1", "--format=%an%n%B"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert log.startswith(f"comfyfleet\nbackup {comfy_sandbox.url} at ")
        assert " UTC\n" in log and "  deleted: workflows/portraits/old/v1 draft.json" in log
        assert f"Backup-Folder: {folder}" in log
        status = [GIT, "-C", str(repo), "status", "--porcelain"]
        assert subprocess.run(status, capture_output=True, text=True).stdout == ""


def _every_object(repo: Path) -> bytes:
    """Every byte under the repository, plus every loose object decompressed."""
    chunks = []
    for path in repo.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            chunks.append(raw)
            if "objects" in path.parts:
                # a pack or an index is no zlib stream: its raw bytes are scanned above
                with contextlib.suppress(zlib.error):
                    chunks.append(zlib.decompress(raw))
    if GIT:
        listing = subprocess.run(
            [GIT, "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True,
            check=True,
        )
        chunks.append(listing.stdout)
    return b"\n".join(chunks)


async def test_secrets_never_reach_the_repository(
    comfy_sandbox: SandboxComfy, settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "backups"
    hf, civitai, google = SECRETS["hf_token"], SECRETS["civitai_key"], SECRETS["google_key"]
    url = f"https://civitai.com/api/download/models/4384?token={civitai}"
    files = {
        "keys.json": wf(f"HF_TOKEN={hf}", url),
        "api/gemini.json": json.dumps(
            {"4": {"class_type": "GeminiNode", "inputs": {"api_key": google, "seed": 5}}}
        ).encode(),
        "same-key-again.json": wf(f"again {hf}"),
    }
    await put(comfy_sandbox, files)
    async with httpx.AsyncClient() as http:
        await http.post(f"{comfy_sandbox.url}/settings/Custom.ApiKey", json=google)
    result = await backup_source(source_of(comfy_sandbox), repo, settings)
    found = {(f.file, f.path, f.kind) for f in result.findings}
    assert ("workflows/keys.json", "$.nodes[1].widgets_values[0]", "hf_token") in found
    assert ("workflows/keys.json", "$.nodes[1].widgets_values[1]", "url_token") in found
    assert ("workflows/api/gemini.json", '$["4"].inputs.api_key', "google_key") in found
    assert ("comfy.settings.json", '$["Custom.ApiKey"]', "google_key") in found
    everything = _every_object(repo)
    for secret in (hf, civitai, google):
        assert secret.encode() not in everything
    stored = repo_files(repo, result.folder)
    placeholder = next(f.placeholder for f in result.findings if f.kind == "hf_token")
    assert placeholder.encode() in stored["workflows/keys.json"]
    assert placeholder.encode() in stored["workflows/same-key-again.json"]
    if GIT:
        message = subprocess.run(
            [GIT, "-C", str(repo), "log", "-1", "--format=%B"], capture_output=True, text=True
        ).stdout
        assert "Scrubbed: workflows/keys.json $.nodes[1].widgets_values[0]" in message
        assert "(hf_token)" in message and hf not in message


async def test_restore_gives_back_what_the_repository_holds(
    comfy_sandbox: SandboxComfy, other_server: SandboxComfy, settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "backups"
    files = {
        "plain.json": wf("plain"),
        "nested/deep/keys.json": wf(SECRETS["sk_key"]),
        "ünïcode name.json": wf("ü"),
    }
    await put(comfy_sandbox, files)
    async with httpx.AsyncClient() as http:
        await http.post(f"{comfy_sandbox.url}/settings/Comfy.Locale", json="fr")
    done = await backup_source(source_of(comfy_sandbox), repo, settings)
    target = source_of(other_server)
    with pytest.raises(UsageError, match="holds no backup of"):
        await restore(target, repo, settings)
    result = await restore(target, repo, settings, from_folder=done.folder, with_settings=True)
    assert result.settings == "written"
    async with ComfyClient(other_server.url) as client:
        assert await client.settings() == {"Comfy.Locale": "fr"}
    assert sorted(f.path for f in result.files if f.status == "written") == sorted(files)
    assert [f.path for f in result.with_placeholders] == ["nested/deep/keys.json"]
    stored = repo_files(repo, done.folder)
    async with ComfyClient(other_server.url) as client:
        for path in files:
            assert await client.userdata_read(f"workflows/{path}") == stored[f"workflows/{path}"]
        assert SECRETS["sk_key"].encode() not in await client.userdata_read(
            "workflows/nested/deep/keys.json"
        )
        await client.userdata_write("workflows/plain.json", b"edited on the server")
    again = await restore(target, repo, settings, from_folder=done.folder)
    assert {f.path: f.status for f in again.files} == {
        "plain.json": "kept",
        "nested/deep/keys.json": "unchanged",
        "ünïcode name.json": "unchanged",
    }
    forced = await restore(
        target, repo, settings, from_folder=done.folder, only=["plain"], overwrite=True
    )
    assert [(f.path, f.status) for f in forced.files] == [("plain.json", "written")]
    # back onto the server that still holds the real secret: it is never swapped for a
    # placeholder, not even with overwrite
    home = await restore(source_of(comfy_sandbox), repo, settings, overwrite=True)
    assert {f.path: f.status for f in home.files}["nested/deep/keys.json"] == "filled"
    assert home.with_placeholders == []
    async with ComfyClient(comfy_sandbox.url) as client:
        held = await client.userdata_read("workflows/nested/deep/keys.json")
        assert held == files["nested/deep/keys.json"]


async def test_restore_an_older_revision_of_one_workflow(
    comfy_sandbox: SandboxComfy, settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "backups"
    await put(comfy_sandbox, {"a/shot.json": wf("v1"), "b/shot.json": wf("b"), "x.json": wf("x")})
    await backup_source(source_of(comfy_sandbox), repo, settings)
    await put(comfy_sandbox, {"x.json": wf("x v2")})
    await backup_source(source_of(comfy_sandbox), repo, settings)
    source = source_of(comfy_sandbox)
    with pytest.raises(UsageError, match="names 2 workflows"):
        await restore(source, repo, settings, only=["shot.json"])
    with pytest.raises(UsageError, match="no workflow 'nope'") as missing:
        await restore(source, repo, settings, only=["nope"])
    assert "a/shot.json" in (missing.value.hint or "")
    with pytest.raises(UsageError, match="no revision"):
        await restore(source, repo, settings, rev="deadbeef")
    old = await restore(source, repo, settings, rev="HEAD~1", only=["x"], overwrite=True)
    assert [(f.path, f.status) for f in old.files] == [("x.json", "written")]
    async with ComfyClient(comfy_sandbox.url) as client:
        assert await client.userdata_read("workflows/x.json") == wf("x")
        assert await client.userdata_read("workflows/a/shot.json") == wf("v1")


async def test_holdings_compare_content_after_scrubbing(
    comfy_sandbox: SandboxComfy, other_server: SandboxComfy, settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "backups"
    source = source_of(comfy_sandbox)
    await put(comfy_sandbox, {"keys.json": wf(SECRETS["hf_token"]), "two.json": wf("2")})
    before = await held_workflows(source, repo, settings)
    assert not before.repo_exists and [w.status for w in before.workflows] == ["new", "new"]
    await backup_source(source, repo, settings)
    await put(comfy_sandbox, {"two.json": wf("2 changed"), "three.json": wf("3")})
    held = await held_workflows(source, repo, settings)
    assert {w.path: w.status for w in held.workflows} == {
        "keys.json": "backed-up",  # the secret is scrubbed the same way: same content
        "three.json": "new",
        "two.json": "changed",
    }
    await put(other_server, {"copied.json": wf(SECRETS["hf_token"])})
    elsewhere = await held_workflows(source_of(other_server), repo, settings)
    (copy,) = elsewhere.workflows
    assert copy.status == "copy" and copy.backed_up and copy.elsewhere is not None
    assert copy.elsewhere.endswith("/workflows/keys.json")


async def test_backup_first_backs_up_only_what_is_missing(
    comfy_sandbox: SandboxComfy, settings: Settings, tmp_path: Path
) -> None:
    repo, clock = tmp_path / "backups", SystemClock()
    source = source_of(comfy_sandbox)
    empty = await guarded(source, repo, settings, clock)
    assert empty.state == "skipped" and not repo.exists()
    await put(comfy_sandbox, {"a.json": wf("a")})
    first = await guarded(source, repo, settings, clock)
    assert first.state == "backed-up" and first.result is not None and first.result.commit
    async with httpx.AsyncClient() as http:  # settings alone do not call for a backup
        await http.post(f"{comfy_sandbox.url}/settings/Comfy.Locale", json="de")
    second = await guarded(source, repo, settings, clock)
    assert second.state == "up-to-date" and commits(repo) == 1


async def test_backup_first_gives_up_quickly_on_a_hung_server(
    settings: Settings, tmp_path: Path
) -> None:
    """A server that accepts connections and never answers (a hung ComfyUI)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    quick = settings.model_copy(
        update={"backup": settings.backup.model_copy(update={"timeout": 1.0})}
    )
    try:
        started = time.monotonic()
        outcome = await guarded(
            url_source(Target(f"http://127.0.0.1:{port}")), tmp_path / "r", quick, SystemClock()
        )
        elapsed = time.monotonic() - started
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert outcome.failed and "no answer within 1 s" in outcome.message
    assert elapsed < 5
    refused = await guarded(
        url_source(Target(f"http://127.0.0.1:{port}")), tmp_path / "r", quick, SystemClock()
    )
    assert refused.failed and "cannot back up" in refused.message
