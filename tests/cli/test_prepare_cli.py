"""`comfyfleet prepare`: the installed CLI against a rented sandbox instance, with the catalogs
and the model files served by a loopback stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.models.modelserver import ModelServer
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
) -> Iterator[tuple[dict[str, str], ModelServer, Path]]:
    """A sandbox cloud with one ready instance `box`; the stand-in; a folder for files."""
    yield from served_world(tmp_path_factory, shared_dir, "box")


def test_prepare_then_nothing_to_do_then_warm_up(
    world: tuple[dict[str, str], ModelServer, Path],
) -> None:
    env, server, base = world
    url = make_prep_pack(base / "repos")
    list_pack_in_catalog(server, url, [PACK_CLASS])
    model_url, sha = serve_model(server, CHECKPOINT, 3)
    flow = workflow(base, "wf.json", model_url=model_url, model_sha=sha)

    done = run(env, "prepare", str(flow), "box", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"installed {PACK} at " in done.stdout and "(1 node class: PrepNote)" in done.stdout
    assert f"downloaded checkpoints/{CHECKPOINT}" in done.stdout and sha in done.stdout
    assert "restarted ComfyUI once" in done.stdout and "ready: ComfyUI on box" in done.stdout
    assert done.stderr.count("restarting ComfyUI") == 1  # progress goes to stderr

    again = run(env, "prepare", str(flow), "box", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["runnable"] and not report["changed"] and not report["restarted"]
    assert report["packs"] == [] and {m["status"] for m in report["models"]} == {"present"}

    warm = run(env, "prepare", str(flow), "box", "--warm-up")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "nothing to do" in warm.stdout and "warm-up: " in warm.stdout
    assert "1 output file(s)" in warm.stdout


def test_what_cannot_be_resolved_exits_3_with_the_fix(
    world: tuple[dict[str, str], ModelServer, Path],
) -> None:
    env, server, base = world
    model_url, sha = serve_model(server, CHECKPOINT, 3)
    flow = workflow(
        base, "mystery.json", model_url=model_url, model_sha=sha, extra_classes=("MysteryNode42",)
    )
    done = run(env, "prepare", str(flow), "box")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "could not resolve:" in done.stdout
    assert "node     MysteryNode42: unknown" in done.stdout
    assert "fix: --pack MysteryNode42=GIT_URL" in done.stdout
    assert "NOT READY" in done.stdout
    as_json = run(env, "prepare", str(flow), "box", "--json")
    assert as_json.returncode == 3
    unresolved = json.loads(as_json.stdout)["unresolved"]
    assert ("node", "MysteryNode42", "unknown") in {
        (u["kind"], u["item"], u["reason"]) for u in unresolved
    }
    hostile = run(env, "prepare", str(flow), "box", "--pack", "MysteryNode42=file:///x;id")
    assert hostile.returncode == 2 and "not a usable git repository URL" in hostile.stderr
