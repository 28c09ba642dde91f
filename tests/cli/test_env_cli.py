"""`comfyfleet env lock|apply`: the installed CLI, two rented sandbox instances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.prepare.flows import (
    CHECKPOINT,
    PACK,
    PACK_CLASS,
    list_pack_in_catalog,
    make_prep_pack,
    serve_model,
    workflow,
)

from .cloudkit import run, served_world


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> Iterator[tuple[dict[str, str], Path]]:
    """Instance `a` made ready for a workflow, and a fresh instance `b`."""
    for env, server, base in served_world(tmp_path_factory, shared_dir, "a", "b"):
        url = make_prep_pack(base / "repos")
        list_pack_in_catalog(server, url, [PACK_CLASS])
        model_url, sha = serve_model(server, CHECKPOINT, 5)
        flow = workflow(base, "wf.json", model_url=model_url, model_sha=sha)
        done = run(env, "prepare", str(flow), "a", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        yield env, base


def test_lock_dry_run_apply(world: tuple[dict[str, str], Path]) -> None:
    env, base = world
    path = base / "a.lock.json"
    locked = run(env, "env", "lock", "a", "-o", str(path))
    assert locked.returncode == 0, locked.stderr
    assert f"wrote {path}" in locked.stdout and "hashed on the instance" in locked.stdout
    lock = json.loads(path.read_text())
    assert lock["format"] == "comfyfleet-env-lock" and lock["version"] == 1
    assert PACK in {p["name"] for p in lock["custom_nodes"]}
    printed = run(env, "env", "lock", "a")  # no -o: the lock on standard output
    assert (
        printed.returncode == 0
        and json.loads(printed.stdout)["custom_nodes"] == lock["custom_nodes"]
    )

    dry = run(env, "env", "apply", "b", str(path), "--dry-run", "--json")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] and planned["locked_from"] == "a" and not planned["ok"]
    assert {(a["action"], a["item"], a["status"]) for a in planned["actions"]} >= {
        ("install-pack", f"custom_nodes/{PACK}", "planned"),
        ("pull", f"models/checkpoints/{CHECKPOINT}", "planned"),
    }
    assert {(d["item"], d["found"]) for d in planned["remaining"]} >= {
        (f"custom_nodes/{PACK}", "-")
    }

    applied = run(env, "env", "apply", "b", str(path), timeout=300)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "applied the lock to b (locked from a)" in applied.stdout
    assert f"done   install-pack custom_nodes/{PACK}" in applied.stdout
    assert f"done   pull models/checkpoints/{CHECKPOINT}" in applied.stdout
    assert "restarted ComfyUI once" in applied.stdout
    assert "no difference left: the instance matches the lock" in applied.stdout

    # the lock itself, changed by hand: the table shows what differs
    lock["protected"]["torch"] = "2.9.0+cu128"
    other = base / "other.lock.json"
    other.write_text(json.dumps(lock))
    table = run(env, "env", "apply", "b", str(other))
    assert table.returncode == 1, table.stdout + table.stderr
    assert "differences left" in table.stdout
    assert "protected/torch" in table.stdout and "2.9.0+cu128" in table.stdout
    assert "protected packages are never changed" in table.stdout


def test_a_bad_lock_file_exits_2(world: tuple[dict[str, str], Path]) -> None:
    env, base = world
    bad = base / "bad.json"
    bad.write_text(json.dumps({"format": "comfyfleet-env-lock", "version": 7}))
    done = run(env, "env", "apply", "b", str(bad))
    assert done.returncode == 2 and "format version 7" in done.stderr
    missing = run(env, "env", "apply", "b", str(base / "nope.json"), "--json")
    assert missing.returncode == 2
    assert "does not exist" in json.loads(missing.stdout)["error"]["message"]
