"""`comfyfleet models pull|ls|rm` through the installed command against a sandbox instance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.catalog.standins import ThreadedStandin
from tests.models.conftest import CIVITAI_TOKEN, blob, grep_tree
from tests.models.modelserver import ModelServer

from .cloudkit import run, sandbox_world


@pytest.fixture(scope="module")
def box(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> Iterator[tuple[dict[str, str], ModelServer]]:
    """A sandbox cloud with one ready instance `box`, and a model server in a thread."""
    server = ModelServer(shared_dir / "fixtures" / "comfyui-manager")
    server.blobs["cli-lora.safetensors"] = blob(31, 180_000)
    server.blobs["cli-style.safetensors"] = blob(32, 120_000)
    server.add_civitai(9001, "cli-style.safetensors", model=55, model_type="LORA")
    server.civitai_token = CIVITAI_TOKEN
    threaded = ThreadedStandin(server)
    try:
        for env in sandbox_world(tmp_path_factory):
            env.update(server.env(Path(env["HOME"]) / "catalog-cache"))
            up = run(env, "up", "--order", "dph_total", "--name", "box", "--json")
            assert up.returncode == 0, up.stderr
            env["BOX_ID"] = str(json.loads(up.stdout)["id"])
            yield env, server
    finally:
        threaded.stop()


def comfy_dir(env: dict[str, str]) -> Path:
    data = Path(env["COMFYFLEET_PATHS__DATA_DIR"])
    return data / "sandbox" / "instances" / env["BOX_ID"] / "root" / "workspace" / "ComfyUI"


def test_pull_shows_progress_then_the_result_and_is_idempotent(
    box: tuple[dict[str, str], ModelServer],
) -> None:
    env, server = box
    url = f"{server.url}/files/cli-lora.safetensors"
    done = run(env, "models", "pull", "box", url, "--folder", "loras", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "downloaded" and result["path"] == "loras/cli-lora.safetensors"
    assert result["sha256"] == server.sha("cli-lora.safetensors")
    assert "KiB" in done.stderr and "checking the sha256" in done.stderr
    placed = comfy_dir(env) / "models" / "loras" / "cli-lora.safetensors"
    assert placed.read_bytes() == server.blobs["cli-lora.safetensors"]
    again = run(env, "models", "pull", "box", url, "--folder", "loras")
    assert again.returncode == 0, again.stderr
    assert "already there" in again.stdout
    assert len(server.gets("cli-lora.safetensors")) == 1


def test_civitai_token_from_the_environment_never_shows(
    box: tuple[dict[str, str], ModelServer],
) -> None:
    env, _server = box
    without = run(env, "models", "pull", "box", "civitai:55@9001")
    assert without.returncode == 2
    assert "Civitai API token" in without.stderr and "CIVITAI_TOKEN" in without.stderr
    done = run({**env, "CIVITAI_TOKEN": CIVITAI_TOKEN}, "models", "pull", "box", "civitai:55@9001")
    assert done.returncode == 0, done.stderr
    assert "models/loras/cli-style.safetensors" in done.stdout and "verified" in done.stdout
    assert "Civitai's model type LORA" in done.stderr
    shown = run(env, "show", "box", "--json")
    for text in (done.stdout, done.stderr, shown.stdout):
        assert CIVITAI_TOKEN not in text
    assert grep_tree(Path(env["COMFYFLEET_PATHS__DATA_DIR"]), CIVITAI_TOKEN.encode()) == []
    assert grep_tree(Path(env["HOME"]), CIVITAI_TOKEN.encode()) == []


def test_bad_input_and_mismatch_exit_with_clear_errors(
    box: tuple[dict[str, str], ModelServer],
) -> None:
    env, server = box
    hostile = run(env, "models", "pull", "box", f"{server.url}/files/x;id.safetensors")
    assert hostile.returncode == 2 and "shell characters" in hostile.stderr
    url = f"{server.url}/files/cli-lora.safetensors"
    mismatch = run(env, "models", "pull", "box", url, "--folder", "vae", "--sha256", "0" * 64)
    assert mismatch.returncode == 1
    assert "expected " + "0" * 64 in mismatch.stderr and "deleted" in mismatch.stderr
    assert not list((comfy_dir(env) / "models" / "vae").glob("cli-lora*"))
    rm = run(env, "models", "rm", "box", "../../etc/passwd")
    assert rm.returncode == 2


def test_ls_then_rm(box: tuple[dict[str, str], ModelServer]) -> None:
    env, server = box
    url = f"{server.url}/files/cli-lora.safetensors"
    assert run(env, "models", "pull", "box", url, "--folder", "clip").returncode == 0
    listed = run(env, "models", "ls", "box", "--json")
    assert listed.returncode == 0, listed.stderr
    files = {f["path"]: f for f in json.loads(listed.stdout)}
    assert files["clip/cli-lora.safetensors"]["folder"] == "text_encoders"
    assert files["clip/cli-lora.safetensors"]["source"] == url
    table = run(env, "models", "ls", "box")
    assert "clip/cli-lora.safetensors" in table.stdout and "text_encoders" in table.stdout
    removed = run(env, "models", "rm", "box", "clip/cli-lora.safetensors", "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["removed"] == "models/clip/cli-lora.safetensors"
    after = {f["path"] for f in json.loads(run(env, "models", "ls", "box", "--json").stdout)}
    assert "clip/cli-lora.safetensors" not in after
    assert "checkpoints/v1-5-pruned-emaonly-fp16.safetensors" in after, "only that file went"
    events = json.loads(run(env, "show", "box", "--json").stdout)
    kinds = json.dumps(events)
    assert "model-pulled" in kinds and "model-removed" in kinds
