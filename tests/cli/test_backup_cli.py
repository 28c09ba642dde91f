"""Workflow backups end to end: a detached sandbox cloud, rented instances, the installed CLI.

backup -> destroy (backs up what is new first) -> a new instance -> restore gives back byte for
byte what the repository holds, placeholders reported; `stop` backs up first; `destroy --yes`
of an instance whose ComfyUI is hung or gone warns and still destroys.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from comfyfleet.services.secrets import web_token
from comfyfleet.state.rows import tracking_tag

from .cloudkit import sandbox_world

BACKUP_TIMEOUT = "4"
_RNG = random.Random(611)
# Real-looking secrets, made at run time (this file holds none).
SECRETS = {
    "hf_token": "hf_" + "".join(_RNG.choice(string.ascii_letters) for _ in range(34)),
    "civitai_key": "".join(_RNG.choice("0123456789abcdef") for _ in range(32)),
}


def ui_workflow(*widget_values: Any) -> dict[str, Any]:
    """A UI-format workflow as the editor saves it: a note holding `widget_values`."""
    return {
        "last_node_id": 2,
        "last_link_id": 0,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "widgets_values": [512, 512, 1, 0]},
            {"id": 2, "type": "Note", "widgets_values": list(widget_values)},
        ],
        "links": [],
        "version": 0.4,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A detached sandbox cloud for this module; env for every CLI call."""
    repo = tmp_path_factory.mktemp("backup-cli") / "backups"
    yield from sandbox_world(
        tmp_path_factory,
        COMFYFLEET_BACKUP__REPO=str(repo),
        COMFYFLEET_BACKUP__TIMEOUT=BACKUP_TIMEOUT,
    )


def _run(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("comfyfleet")
    assert exe, "the comfyfleet console script is not installed"
    return subprocess.run(
        [exe, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def _ok(env: dict[str, str], *args: str) -> Any:
    done = _run(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _up(env: dict[str, str], name: str) -> dict[str, Any]:
    info: dict[str, Any] = _ok(env, "up", "--order", "dph_total", "--name", name)
    (row,) = [r for r in _ok(env, "ls") if r["id"] == info["id"]]
    token = web_token(Path(env["COMFYFLEET_PATHS__CONFIG_DIR"]), tracking_tag(row["label"]) or "")
    return {**info, "token": token}


def _http(inst: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=inst["url"], headers={"Authorization": f"Bearer {inst['token']}"}, timeout=10
    )


def _put(inst: dict[str, Any], files: dict[str, bytes]) -> None:
    with _http(inst) as http:
        for path, data in files.items():
            r = http.post(f"/userdata/{quote('workflows/' + path, safe='')}", content=data)
            assert r.status_code == 200, r.text


def _get(inst: dict[str, Any], path: str) -> bytes:
    with _http(inst) as http:
        r = http.get(f"/userdata/{quote('workflows/' + path, safe='')}")
        assert r.status_code == 200, r.text
        return r.content


def _sandbox(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    state = json.loads(
        (Path(env["COMFYFLEET_PATHS__DATA_DIR"]) / "sandbox" / "sandbox.json").read_text()
    )
    return state["url"], {"Authorization": f"Bearer {state['api_key']}"}


def _billing_ids(env: dict[str, str]) -> set[int]:
    url, headers = _sandbox(env)
    body = httpx.get(url + "/api/v0/instances/", headers=headers, timeout=10).json()
    return {i["id"] for i in body["instances"]}


def _git(env: dict[str, str], *args: str) -> str:
    git = shutil.which("git")
    if git is None:
        pytest.skip("the git binary reads the repository independently")
    repo = env["COMFYFLEET_BACKUP__REPO"]
    return subprocess.run(
        [git, "-C", repo, *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def wf(label: str, *extra: Any) -> bytes:
    return (json.dumps(ui_workflow(label, *extra), indent=2) + "\n").encode()


def test_backup_destroy_then_restore_on_a_new_instance(world: dict[str, str]) -> None:
    hf, civitai = SECRETS["hf_token"], SECRETS["civitai_key"]
    studio = _up(world, "studio")
    files = {
        "txt2img.json": wf("a lighthouse at dusk"),
        "portraits/face.json": wf("portrait"),
        "portraits/keys/downloads.json": wf(
            f"HF_TOKEN={hf}", f"https://civitai.com/api/download/models/1?token={civitai}"
        ),
    }
    _put(studio, files)

    done = _run(world, "backup", "studio", "--json")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["folder"] == "studio" and first["commit"] and first["workflows"] == 3
    assert {s["kind"] for s in first["scrubbed"]} == {"hf_token", "url_token"}
    for secret in (hf, civitai):
        assert secret not in done.stdout + done.stderr
    human = _run(world, "backup", "studio")
    assert human.returncode == 0 and "no changes since the last backup" in human.stdout

    _put(studio, {"late/idea.json": wf("saved after the backup")})
    listed = _ok(world, "workflows", "ls", "studio")
    status = {w["path"]: w["status"] for w in listed["workflows"]}
    assert status == {
        "late/idea.json": "new",
        "portraits/face.json": "backed-up",
        "portraits/keys/downloads.json": "backed-up",
        "txt2img.json": "backed-up",
    }

    gone = _run(world, "destroy", "studio", "--yes", "--json")
    assert gone.returncode == 0, gone.stderr
    report = json.loads(gone.stdout)
    assert report["status"] == "destroyed" and report["backup"]["state"] == "backed-up"
    assert report["backup"]["result"]["added"] == ["workflows/late/idea.json"]
    assert studio["id"] not in _billing_ids(world)
    held = _git(world, "ls-tree", "-r", "--name-only", "HEAD", "studio/").split()
    assert "studio/workflows/late/idea.json" in held and len(held) == 5  # + settings

    fresh = _up(world, "studio")  # the same name, another instance: another folder
    refused = _run(world, "restore", "studio")
    assert refused.returncode == 2 and "--from" in refused.stderr and "studio" in refused.stderr
    restored = _run(world, "restore", "studio", "--from", "studio", "--json")
    assert restored.returncode == 0, restored.stderr
    result = json.loads(restored.stdout)
    assert sorted(f["path"] for f in result["files"] if f["status"] == "written") == sorted(
        [*files, "late/idea.json"]
    )
    assert result["placeholders"] == ["portraits/keys/downloads.json"]
    for path in [*files, "late/idea.json"]:
        assert _get(fresh, path).decode() == _git(world, "show", f"HEAD:studio/workflows/{path}")
    assert hf.encode() not in _get(fresh, "portraits/keys/downloads.json")
    shown = _run(world, "restore", "studio", "--from", "studio", "--only", "downloads")
    assert shown.returncode == 0, shown.stderr
    assert "unchanged portraits/keys/downloads.json" in shown.stdout
    assert "portraits/keys/downloads.json: hf_token, url_token" in shown.stdout
    older = _ok(world, "restore", "studio", "--from", "studio", "--rev", "HEAD~1")
    assert {f["path"]: f["status"] for f in older["files"]} == dict.fromkeys(files, "unchanged")

    # stop backs up first: the restored files are in the repository already, the new one not
    _put(fresh, {"after-restore.json": wf("made on the new instance")})
    stopped = _run(world, "stop", "studio", "--json")
    assert stopped.returncode == 0, stopped.stderr
    stop_report = json.loads(stopped.stdout)
    assert stop_report["status"] == "stopped" and stop_report["backup"]["state"] == "backed-up"
    new_folder = stop_report["backup"]["result"]["folder"]
    assert new_folder == f"studio-{fresh['id']}"
    assert f"{new_folder}/workflows/after-restore.json" in _git(
        world, "ls-tree", "-r", "--name-only", "HEAD"
    )
    index = json.loads(_git(world, "show", "HEAD:comfyfleet-index.json"))["folders"]
    assert index["studio"]["instance_id"] == studio["id"]
    assert index[new_folder]["instance_id"] == fresh["id"]

    # a stopped instance cannot be backed up: destroy --yes warns and destroys
    end = _run(world, "destroy", "studio", "--yes")
    assert end.returncode == 0, end.stderr
    assert "warning: cannot back up studio: it is stopped" in end.stderr
    assert "a leaked instance costs more than a lost backup" in end.stderr
    assert fresh["id"] not in _billing_ids(world)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _comfy_process(env: dict[str, str], instance_id: int) -> int:
    """The pid of the instance's ComfyUI (a child of the host process our sandbox started)."""
    url, headers = _sandbox(env)
    state = httpx.get(url + "/__sandbox/state", headers=headers, timeout=10).json()
    (host_pid,) = [i["host_pid"] for i in state["instances"] if i["id"] == instance_id]
    for pid in _children(host_pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"comfyfleet.sandbox.comfy" in cmdline:
            return pid
    raise AssertionError(f"no ComfyUI process under host {host_pid}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes in /proc")
def test_destroy_yes_never_waits_on_a_hung_comfyui(world: dict[str, str]) -> None:
    hung = _up(world, "hung")
    _put(hung, {"unsaved.json": wf("never backed up")})
    pid = _comfy_process(world, hung["id"])
    os.kill(pid, signal.SIGSTOP)  # ComfyUI stops answering; connections still open
    try:
        asked = _run(world, "destroy", "hung", stdin="y\n")  # then no answer to "go on?"
        assert asked.returncode == 2  # input ended before the question was answered
        assert "no answer within" in asked.stderr and "without backing up" in asked.stderr
        assert "pass --yes" in asked.stderr
        assert hung["id"] in _billing_ids(world), "without --yes the user decides"

        started = time.monotonic()
        gone = _run(world, "destroy", "hung", "--yes", "--json")
        elapsed = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["backup"]["state"] == "failed"
    assert "warning: cannot back up hung" in gone.stderr
    assert hung["id"] not in _billing_ids(world)
    assert elapsed < float(BACKUP_TIMEOUT) + 30


def test_backup_all_stop_with_comfyui_down_and_no_backup(world: dict[str, str]) -> None:
    box = _up(world, "box")
    _put(box, {"one.json": wf("one")})
    outcomes = _ok(world, "backup", "--all")
    assert [o["result"]["folder"] for o in outcomes] == ["box"]
    both = _run(world, "backup", "box", "--all")
    assert both.returncode == 2 and "or --all" in both.stderr
    neither = _run(world, "backup")
    assert neither.returncode == 2
    listed = _run(world, "workflows", "ls", "box")
    assert listed.returncode == 0 and "one.json" in listed.stdout and "yes" in listed.stdout
    _put(box, {"two.json": wf("two")})
    with _http(box) as http:  # ComfyUI stops listening; its proxy answers 502
        r = http.post("/__sandbox/knobs", json={"refuse": {"seconds": 3600}})
        assert r.status_code == 200
    stopped = _run(world, "stop", "box", "--yes", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["backup"]["state"] == "failed"
    assert "warning: cannot back up box" in stopped.stderr and "going on" in stopped.stderr
    skipped = _run(world, "destroy", "box", "--yes", "--no-backup", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert "backup" not in json.loads(skipped.stdout) and "backup" not in skipped.stderr
    assert "box/workflows/two.json" not in _git(world, "ls-tree", "-r", "--name-only", "HEAD")
    assert box["id"] not in _billing_ids(world)
