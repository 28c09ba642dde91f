"""The cloud commands end to end: a detached sandbox cloud, the installed CLI as a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.services.demo import TXT2IMG, sample_path

from .cloudkit import (
    destroy_all,
    exe,
    knobs,
    run,
    sandbox_world,
    untracked_billing,
    vast_instances,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from sandbox_world(tmp_path_factory)


def test_instance_lifecycle(world: dict[str, str], tmp_path: Path) -> None:
    up = run(world, "up", "--order", "dph_total", "--name", "studio", "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["name"] == "studio" and info["url"].startswith("http://127.0.0.1:")
    assert "waiting for" in up.stderr  # progress was shown
    vast_id = str(info["id"])

    listed = json.loads(run(world, "ls", "--json").stdout)
    (row,) = listed
    assert row["id"] == info["id"] and row["status"] == "running" and row["ready"] is True

    ran = run(
        world,
        "run",
        str(sample_path(TXT2IMG)),
        "--target",
        "studio",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["files"]

    renamed = run(world, "rename", vast_id, "atelier", "--json")
    assert renamed.returncode == 0, renamed.stderr
    (vast_row,) = vast_instances(world)
    assert vast_row["label"].startswith("comfyfleet:manual:") and vast_row["label"].endswith(
        ":atelier"
    )
    shown = json.loads(run(world, "show", "atelier", "--json").stdout)
    assert shown["id"] == info["id"] and shown["cost_usd"] > 0
    assert [e["kind"] for e in shown["events"]].count("renamed") == 1
    text = run(world, "show", "atelier").stdout  # for people: dates, durations, dollars
    assert re.search(r"created_at: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), text
    assert re.search(r"running_seconds: \d+h \d\dm \d\ds", text)
    assert re.search(r"cost_usd: \$\d+\.\d{4}", text) and "destroyed_at: -" in text
    assert re.search(r"\d\d:\d\d:\d\d  status loading -> running", text)

    stopped = run(world, "stop", "atelier", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["status"] == "stopped"
    on_stopped = run(world, "exec", "atelier", "--", "true")  # SSH: said at once, with the fix
    assert on_stopped.returncode == 2 and "instance atelier is stopped" in on_stopped.stderr
    assert f"comfyfleet start {vast_id}" in on_stopped.stderr
    started = run(world, "start", "atelier", "--json")
    assert started.returncode == 0, started.stderr

    # Vast failing (a 5xx storm): `ls` shows the instances as last recorded, and says so.
    knobs(world, {"fail_next": {"count": 100, "status": 503}})
    try:
        stale = run(world, "ls", "--json")
        one = run(world, "show", "atelier")
    finally:
        knobs(world, {"reset": True})
    assert stale.returncode == 1  # a Vast server error's code
    assert [v["name"] for v in json.loads(stale.stdout)] == ["atelier"]
    assert "warning: " in stale.stderr and "as last recorded" in stale.stderr
    assert "HTTP 503: 503 Service Unavailable" in stale.stderr and "<" not in stale.stderr
    assert one.returncode == 1 and "name: atelier" in one.stdout
    assert "the instance as last recorded" in one.stderr

    assert run(world, "destroy", "atelier").returncode == 2  # asks; no answer: pass --yes
    gone = run(world, "destroy", "atelier", "--yes", "--json")
    assert gone.returncode == 0, gone.stderr
    assert vast_instances(world) == []
    again = run(world, "destroy", vast_id, "--yes")
    assert again.returncode == 2 and "destroyed" in again.stderr


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _up_in_background(world: dict[str, str]) -> subprocess.Popen[str]:
    """`comfyfleet up` started and left running (its progress on stderr)."""
    return subprocess.Popen(
        [exe(), "up", "--order", "dph_total"],
        env=world,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("step", ["search", "create", "wait"])
def test_killing_up_at_any_step_leaves_nothing_untracked(world: dict[str, str], step: str) -> None:
    if step == "search":
        knobs(world, {"hold_responses": {"search_offers": 3.0}})
    elif step == "create":
        knobs(world, {"hold_responses": {"create_instance": 3.0}})
    else:
        knobs(world, {"durations": {"loading": 3000.0}})
    proc = _up_in_background(world)
    try:
        if step == "search":
            time.sleep(1.0)
        else:
            _wait(lambda: bool(vast_instances(world)), "the create to reach the cloud")
            if step == "wait":
                time.sleep(0.5)  # the create answered: up is waiting for readiness
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()
        knobs(world, {"reset": True, "durations": {"loading": 30.0}})
    assert untracked_billing(world) == []
    if step == "create":
        assert vast_instances(world) == [], "the never-recorded create must be reaped"
    if step == "wait":
        assert len(vast_instances(world)) == 1, "a recorded create is tracked, not reaped"
    destroy_all(world)


def test_offers_with_a_bad_field_lists_valid_ones(world: dict[str, str]) -> None:
    result = run(world, "offers", "gpu_nam=RTX_4090")
    assert result.returncode == 2
    assert "gpu_nam" in result.stderr and "gpu_name" in result.stderr


def test_offers_table(world: dict[str, str]) -> None:
    result = run(world, "offers", "num_gpus=1", "--order", "dph_total", "--limit", "3", "--json")
    assert result.returncode == 0, result.stderr
    offers = json.loads(result.stdout)
    assert len(offers) == 3
    prices = [o["dph_total"] for o in offers]
    assert prices == sorted(prices)


def test_no_match_says_what_was_asked_and_how_to_widen_it(world: dict[str, str]) -> None:
    result = run(world, "offers", "gpu_ram>=24", "dph<0.01")
    assert result.returncode == 0 and result.stdout.strip() == "no offers match"
    assert "gpu_ram>=24000.0 dph_total<0.01" in result.stderr  # what Vast was asked, in its units
    assert "reliability>0.98" in result.stderr and "reliability=any" in result.stderr
    up = run(world, "up", "--max-dph", "0.01")
    assert up.returncode == 2
    assert "no offer matches:" in up.stderr and "dph_total<=0.01" in up.stderr
    assert "=any" in up.stderr
    assert vast_instances(world) == []  # nothing rented


def test_up_dry_run_shows_the_offers_it_would_try_and_rents_nothing(
    world: dict[str, str],
) -> None:
    planned = run(world, "up", "--order", "dph_total", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    offers = json.loads(planned.stdout)["offers"]
    assert 1 <= len(offers) <= 3  # [vast] max_offers
    prices = [o["dph_total"] for o in offers]
    assert prices == sorted(prices)
    searched = run(world, "offers", "--order", "dph_total", "--limit", "1", "--json")
    assert json.loads(searched.stdout)[0]["id"] == offers[0]["id"]  # the same first choice
    assert vast_instances(world) == []
    text = run(world, "up", "--dry-run")
    assert text.returncode == 0 and "up would try these" in text.stderr


def test_sandbox_profile_without_a_running_sandbox(tmp_path: Path) -> None:
    env = {**os.environ, "COMFYFLEET_PATHS__DATA_DIR": str(tmp_path / "nothing")}
    result = subprocess.run(
        [exe(), "--profile", "sandbox", "ls"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "sandbox is not running" in result.stderr and "sandbox start" in result.stderr


def test_default_profile_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VAST_API_KEY"}
    env["COMFYFLEET_PROFILE"] = "default"
    result = subprocess.run([exe(), "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no Vast API key" in result.stderr and "--profile sandbox" in result.stderr


def test_login_stores_the_key_privately(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COMFYFLEET_PATHS__CONFIG_DIR": str(tmp_path / "cfg"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    key = "a" * 64
    result = subprocess.run(
        [exe(), "login"], env=env, input=key + "\n", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout + result.stderr
    stored = [p for p in (tmp_path / "cfg").rglob("*") if p.is_file() and key in p.read_text()]
    assert len(stored) == 1
    assert stored[0].stat().st_mode & 0o077 == 0


def test_ctrl_c_while_up_waits_leaves_a_tracked_instance_and_says_so(world: dict[str, str]) -> None:
    knobs(world, {"durations": {"loading": 3000.0}})
    proc = _up_in_background(world)
    try:
        _wait(lambda: bool(vast_instances(world)), "the create to reach the cloud")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        knobs(world, {"reset": True, "durations": {"loading": 30.0}})
    assert proc.returncode == 130, err
    (inst,) = vast_instances(world)
    assert f"comfyfleet destroy {inst['id']}" in err
    assert untracked_billing(world) == []
    destroy_all(world)


def test_destroy_without_an_answer_says_to_pass_yes(world: dict[str, str]) -> None:
    # No instance is needed: the question comes before anything is looked up.
    result = subprocess.run(
        [exe(), "destroy", "some-box"],
        env=world,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no answer to" in result.stderr and "pass --yes" in result.stderr
    declined = subprocess.run(
        [exe(), "destroy", "some-box"], env=world, input="n\n", capture_output=True, text=True
    )
    assert declined.returncode == 1 and "error" not in declined.stderr
