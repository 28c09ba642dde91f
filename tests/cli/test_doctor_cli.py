"""`comfyfleet doctor` as a user runs it: a plain URL (HTTP checks only), and a rented sandbox
instance that fails a check (exit 1), then `--fix` mends it (exit 0).

(ComfyUI that does not answer, and every other rule, are tables in tests/doctor.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .cloudkit import run, sandbox_world
from .conftest import CliResult


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for env in sandbox_world(tmp_path_factory):
        up = run(env, "up", "--order", "dph_total", "--name", "box", "--json")
        assert up.returncode == 0, up.stderr
        yield env


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_a_url_gets_the_http_checks_and_says_what_it_skipped(
    cli: Any, comfy_sandbox_thread: Any
) -> None:
    done: CliResult = cli("doctor", comfy_sandbox_thread.url, "--json")
    assert done.code == 0, done.stderr
    report = done.json()
    assert report["mode"] == "url" and report["status"] == "ok"
    checks = by_name(report)
    assert checks["comfyui"]["summary"].startswith("ComfyUI 0.3.64 answers")
    assert checks["queue"]["status"] == "ok"
    assert checks["frontend"]["status"] == "skipped"
    assert checks["torch-cuda"]["status"] == "skipped"
    assert checks["torch-cuda"]["summary"].startswith("needs SSH: a URL target")
    text = cli("doctor", comfy_sandbox_thread.url)
    assert text.code == 0 and "overall: ok" in text.stdout
    bad = cli("doctor", comfy_sandbox_thread.url, "--stuck-after", "0")
    assert bad.code == 2 and "must be positive" in bad.stderr


def test_an_instance_fails_a_check_then_fix_mends_it(world: dict[str, str]) -> None:
    pinned = run(world, "pip", "box", "--", "install", "--no-deps", "xformers==0.0.33")
    assert pinned.returncode == 0, pinned.stderr
    broken = run(world, "doctor", "box")
    assert broken.returncode == 1, broken.stderr
    assert "xformers 0.0.33 requires torch==2.9.0" in broken.stdout
    assert "[--fix applies it]" in broken.stdout and "run again with --fix" in broken.stdout

    fixed = run(world, "doctor", "box", "--fix", "--json")
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert {f["action"]: f["applied"] for f in report["fixes"]} == {
        "venv-uninstall": True,
        "restart": True,
    }
    assert by_name({"checks": report["before"]})["accelerators"]["status"] == "fail"
    assert by_name(report)["accelerators"]["status"] == "ok"
    assert "restarting ComfyUI" in fixed.stderr  # progress goes to stderr
