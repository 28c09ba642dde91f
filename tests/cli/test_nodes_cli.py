"""`comfyfleet nodes`: the installed CLI against a rented sandbox instance."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.nodes.packs import commit, make_pack, node_source

from .cloudkit import run, sandbox_world


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A sandbox cloud with one ready instance named `box`."""
    for env in sandbox_world(tmp_path_factory):
        # simulated seconds: a ComfyUI restart takes a real second or two
        env["COMFYFLEET_NODES__RESTART_TIMEOUT"] = "6000"
        up = run(env, "up", "--order", "dph_total", "--name", "box", "--json")
        assert up.returncode == 0, up.stderr
        yield env


def test_install_ls_rm_and_show(box: dict[str, str], tmp_path: Path) -> None:
    url = make_pack(
        tmp_path,
        "cli_pack",
        {
            "__init__.py": node_source("CliNode", imports="import cv2\n"),
            "requirements.txt": "opencv-python-headless\n",
        },
    )
    done = run(box, "nodes", "install", "box", url, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["pack"], result["status"], result["classes"]) == (
        "cli_pack",
        "installed",
        ["CliNode"],
    )
    assert result["requirements"] == ["opencv-python-headless==4.12.0.88"]
    assert "protected packages pinned" in done.stderr and "restarting ComfyUI" in done.stderr
    again = run(box, "nodes", "install", "box", url)
    assert again.returncode == 0 and "already installed at " + result["commit"] in again.stdout
    listed = json.loads(run(box, "nodes", "ls", "box", "--json").stdout)
    pack = next(p for p in listed["packs"] if p["name"] == "cli_pack")
    assert (pack["url"], pack["commit"], pack["imported"], pack["classes"]) == (
        url,
        result["commit"],
        True,
        1,
    )
    table = run(box, "nodes", "ls", "box")
    assert "cli_pack" in table.stdout and result["commit"][:12] in table.stdout
    newer = commit(
        Path(url.removeprefix("file://")),
        {"__init__.py": node_source("CliNode", "CliNode2", imports="import cv2\n")},
        "a second node",
    )
    updated = run(box, "nodes", "update", "box", "cli_pack")
    assert updated.returncode == 0, updated.stderr
    assert f"updated cli_pack at {newer}" in updated.stdout and "2 node classes" in updated.stdout
    shown = run(box, "show", "box")
    assert f"nodes install cli_pack installed at {result['commit'][:12]}" in shown.stdout
    removed = run(box, "nodes", "rm", "box", "cli_pack")
    assert removed.returncode == 0, removed.stderr
    assert "removed cli_pack" in removed.stdout and "requirements stay" in removed.stdout
    listed = json.loads(run(box, "nodes", "ls", "box", "--json").stdout)
    assert "cli_pack" not in {p["name"] for p in listed["packs"]}


def test_a_refused_pack_exits_non_zero_and_says_why(box: dict[str, str], tmp_path: Path) -> None:
    url = make_pack(
        tmp_path,
        "pins_torch",
        {"__init__.py": node_source("Pin"), "requirements.txt": "torch<2.8\n"},
    )
    done = run(box, "nodes", "install", "box", url)
    assert done.returncode == 1
    assert "refused" in done.stderr and "torch 2.8.0+cu128 -> 2.7.1+cu128" in done.stderr
    assert "required by 'torch<2.8'" in done.stderr
    listed = json.loads(run(box, "nodes", "ls", "box", "--json").stdout)
    assert "pins_torch" not in {p["name"] for p in listed["packs"]}


def test_a_broken_pack_shows_the_import_failure(box: dict[str, str], tmp_path: Path) -> None:
    url = make_pack(tmp_path, "cli_broken", {"__init__.py": "raise ValueError('bad config')\n"})
    done = run(box, "nodes", "install", "box", url)
    assert done.returncode == 1
    assert "(IMPORT FAILED): " in done.stderr and "cli_broken" in done.stderr
    assert "ValueError: bad config" in done.stderr and "Traceback" in done.stderr
    assert "comfyfleet nodes rm" in done.stderr
    assert run(box, "nodes", "rm", "box", "cli_broken").returncode == 0


def test_hostile_input_is_refused_before_any_contact(box: dict[str, str]) -> None:
    hostile = run(box, "nodes", "install", "box", "x;rm -rf /", "--json")
    assert hostile.returncode == 2
    assert json.loads(hostile.stdout)["error"]["type"] == "UnsafeSource"
    rm = run(box, "nodes", "rm", "box", "$(id)")
    assert rm.returncode == 2 and "not a usable node pack name" in rm.stderr
