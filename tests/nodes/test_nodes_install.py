"""`nodes install` on a sandbox instance: packs are local git repositories cloned over SSH,
requirements come from the host's wheelhouse, ComfyUI restarts and loads them for real."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from comfyfleet.errors import (
    InstanceBusy,
    PackImportFailed,
    ProtectedChangeRefused,
    RemoteCommandFailed,
    UnsafeSource,
    UsageError,
)
from comfyfleet.remote.changelock import change_lock
from comfyfleet.services.nodes import install_pack
from comfyfleet.services.remote_ops import open_session
from comfyfleet.state import EventKind

from .conftest import Box, nodes_settings
from .packs import commit, make_pack, node_source

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


def venv_versions(box: Box, *names: str) -> dict[str, str]:
    """Versions in the instance's venv, read on the host's disk (not through comfyfleet)."""
    out = subprocess.run(
        [str(box.venv_python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout
    found = {p["name"].lower(): p["version"] for p in json.loads(out)}
    return {n: found.get(n, "") for n in names}


PROTECTED = ("torch", "torchvision", "xformers", "triton", "nvidia-cublas-cu12")


def events(box: Box) -> list[dict[str, object]]:
    return [
        dict(e.detail or {})
        for e in box.cloud.db.instances.events(box.row.id)
        if e.kind == EventKind.NODES
    ]


async def test_a_pack_with_requirements_is_installed_and_its_classes_load(
    box: Box, tmp_path: Path
) -> None:
    before = venv_versions(box, *PROTECTED)
    url = make_pack(
        tmp_path,
        "onnx_tools",
        {
            "__init__.py": node_source("OnnxVersion", "OnnxShape", imports="import onnx\n"),
            "requirements.txt": "# needs onnx\nonnx>=1.17\n",
            "install.py": "raise SystemExit('install.py must never run')\n",
        },
    )
    lines: list[str] = []
    result = await install_pack(box.cloud, box.ref, url, on_line=lines.append)
    assert result.status == "installed" and result.pack == "onnx_tools"
    assert result.classes == ("OnnxShape", "OnnxVersion")
    assert result.requirements == ("onnx==1.19.0",)
    assert len(result.commit) == 40
    assert any("install.py was not run" in n for n in result.notes)
    assert (box.custom_nodes / "onnx_tools" / "__init__.py").is_file()
    assert not (box.root / "workspace" / "ComfyUI" / ".comfyfleet-staging").exists()
    assert venv_versions(box, "onnx", *PROTECTED) == {"onnx": "1.19.0", **before}
    assert any("protected packages pinned" in line for line in lines)
    assert not list(Path("/tmp").glob("comfyfleet-constraints.*")), "constraints file left"
    assert events(box)[-1]["result"] == "installed"
    again = await install_pack(box.cloud, box.ref, url)
    assert again.status == "already-installed" and again.commit == result.commit


async def test_a_requirement_pinning_another_torch_is_refused(box: Box, tmp_path: Path) -> None:
    before = venv_versions(box, *PROTECTED)
    url = make_pack(
        tmp_path,
        "old_torch",
        {"__init__.py": node_source("OldTorch"), "requirements.txt": "einops\ntorch==2.7.1\n"},
    )
    with pytest.raises(ProtectedChangeRefused) as caught:
        await install_pack(box.cloud, box.ref, url)
    message = str(caught.value)
    assert "torch 2.8.0+cu128 -> 2.7.1+cu128" in message
    assert "'torch==2.7.1'" in message and "nothing was installed" in message
    assert any(c.startswith("triton 3.4.0 -> 3.3.1") for c in caught.value.changes)
    assert venv_versions(box, *PROTECTED) == before
    assert not (box.custom_nodes / "old_torch").exists()
    event = events(box)[-1]
    assert event["result"] == "refused" and event["state"] == (
        "old_torch was not installed (custom_nodes is as it was)"
    )
    assert "torch 2.8.0+cu128 -> 2.7.1+cu128 (required by 'torch==2.7.1')" in str(event["changes"])


async def test_a_protected_package_pulled_in_transitively_is_refused(
    box: Box, tmp_path: Path
) -> None:
    before = venv_versions(box, *PROTECTED, "ultralytics")
    url = make_pack(
        tmp_path,
        "fast_attention",
        {
            "__init__.py": node_source("FastAttention"),
            "requirements.txt": "ultralytics\nxformers==0.0.33\n",
        },
    )
    with pytest.raises(ProtectedChangeRefused) as caught:
        await install_pack(box.cloud, box.ref, url)
    message = str(caught.value)
    assert "xformers 0.0.32 -> 0.0.33 (required by 'xformers==0.0.33')" in message
    assert "torch 2.8.0+cu128 -> 2.9.0+cu128 (required by 'xformers==0.0.33')" in message
    assert venv_versions(box, *PROTECTED, "ultralytics") == before, "nothing installed"
    assert not (box.custom_nodes / "fast_attention").exists()


async def test_a_pack_that_raises_at_import_shows_the_log(box: Box, tmp_path: Path) -> None:
    url = make_pack(
        tmp_path,
        "explodes",
        {"__init__.py": "def load():\n    raise RuntimeError('boom at import')\n\nload()\n"},
    )
    with pytest.raises(PackImportFailed) as caught:
        await install_pack(box.cloud, box.ref, url)
    lines = caught.value.log_lines
    assert lines[0].endswith(f"seconds (IMPORT FAILED): {box.custom_nodes / 'explodes'}")
    assert "Traceback (most recent call last):" in lines
    assert "RuntimeError: boom at import" in lines
    assert lines[-1].startswith(f"Cannot import {box.custom_nodes / 'explodes'} module")
    assert f"comfyfleet nodes rm {box.ref} explodes" in (caught.value.hint or "")
    assert (box.custom_nodes / "explodes").is_dir(), "a broken pack stays for inspection"
    assert events(box)[-1]["result"] == "import-failed"


async def test_a_pack_needing_what_only_the_system_python_has_fails_to_import(
    box: Box, tmp_path: Path
) -> None:
    system_pip = subprocess.run(
        [str(box.root / "usr" / "bin" / "python3"), "-m", "pip", "install", "-q", "piexif"],
        capture_output=True,
        text=True,
        env={
            "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": str(box.root / "etc" / "pip.conf"),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert system_pip.returncode == 0, system_pip.stderr
    url = make_pack(
        tmp_path, "exif_tools", {"__init__.py": node_source("ExifRead", imports="import piexif\n")}
    )
    with pytest.raises(PackImportFailed) as caught:
        await install_pack(box.cloud, box.ref, url)
    assert "ModuleNotFoundError: No module named 'piexif'" in caught.value.log_lines


async def test_ref_selects_a_tag_and_a_later_ref_updates_in_place(box: Box, tmp_path: Path) -> None:
    url = make_pack(tmp_path, "versioned", {"__init__.py": node_source("First")}, tag="v1")
    repo = tmp_path / "versioned"
    second = commit(repo, {"__init__.py": node_source("First", "Second")}, "second", tag="v2")
    first = await install_pack(box.cloud, box.ref, url, git_ref="v1")
    assert first.classes == ("First",) and first.commit != second
    same = await install_pack(box.cloud, box.ref, url, git_ref="v1")
    assert same.status == "already-installed"
    updated = await install_pack(box.cloud, box.ref, url, git_ref="main")
    assert (updated.status, updated.commit, updated.previous_commit) == (
        "updated",
        second,
        first.commit,
    )
    assert updated.classes == ("First", "Second")
    with pytest.raises(UsageError, match="no tag, branch or commit 'v9'"):
        await install_pack(box.cloud, box.ref, url, git_ref="v9")
    # A later version whose requirements are refused leaves the installed one in place.
    commit(repo, {"requirements.txt": "torch==2.7.1\n"}, "third", tag="v3")
    with pytest.raises(ProtectedChangeRefused, match="versioned is back at " + second):
        await install_pack(box.cloud, box.ref, url, git_ref="v3")
    head = (box.custom_nodes / "versioned" / ".git" / "HEAD").read_text().strip()
    assert head == second and not (box.custom_nodes / "versioned" / "requirements.txt").exists()
    # Local changes are never mixed into another checkout.
    (box.custom_nodes / "versioned" / "__init__.py").write_text("# edited\n")
    with pytest.raises(UsageError, match="has local changes"):
        await install_pack(box.cloud, box.ref, url, git_ref="v1")


async def test_a_folder_holding_another_repository_is_not_replaced(
    box: Box, tmp_path: Path
) -> None:
    first = make_pack(tmp_path / "a", "same_name", {"__init__.py": node_source("FromA")})
    other = make_pack(tmp_path / "b", "same_name", {"__init__.py": node_source("FromB")})
    await install_pack(box.cloud, box.ref, first)
    with pytest.raises(UsageError, match=r"already exists and holds .*/a/same_name"):
        await install_pack(box.cloud, box.ref, other)
    assert "FromA" in (box.custom_nodes / "same_name" / "__init__.py").read_text()


async def test_bad_sources_leave_the_instance_as_it_was(box: Box, tmp_path: Path) -> None:
    before = sorted(p.name for p in box.custom_nodes.iterdir())
    marker = tmp_path / "pwned"
    for hostile in ("x;rm -rf /", "$(id)", f"file:///tmp/x;touch {marker}", "`id`", "a|b c"):
        with pytest.raises(UnsafeSource):
            await install_pack(box.cloud, box.ref, hostile)
    # Words with a space are a title to look up, never a command: no pack has this one.
    with pytest.raises(UsageError, match="no node pack 'a b' is known"):
        await install_pack(box.cloud, box.ref, "a b")
    with pytest.raises(UnsafeSource):
        await install_pack(box.cloud, box.ref, "https://example.com/o/p", git_ref="$(id)")
    with pytest.raises(UsageError, match="no node pack 'no-such-pack-anywhere' is known"):
        await install_pack(box.cloud, box.ref, "no-such-pack-anywhere")
    with pytest.raises(RemoteCommandFailed, match="cloning"):
        await install_pack(box.cloud, box.ref, (tmp_path / "missing").as_uri())
    assert sorted(p.name for p in box.custom_nodes.iterdir()) == before
    assert not marker.exists()
    assert not (box.root / "workspace" / "ComfyUI" / ".comfyfleet-staging").exists()


async def test_installs_on_one_instance_take_turns(box: Box, tmp_path: Path) -> None:
    url = make_pack(tmp_path, "turns_pack", {"__init__.py": node_source("TurnTaker")})
    target = box.custom_nodes / "turns_pack"
    async with open_session(box.cloud, box.ref) as other:
        layout = await other.layout(box.cloud)
        # Another command (another terminal, another machine) is changing the instance.
        async with change_lock(other.conn, layout, "nodes install Busy-Pack", wait=0):
            impatient = box.with_settings(
                nodes_settings(box.base, COMFYFLEET_REMOTE__CHANGE_WAIT="1")
            )
            with pytest.raises(InstanceBusy) as caught:
                await install_pack(impatient, box.ref, url)
            assert "nodes install Busy-Pack" in str(caught.value)
            assert not target.exists()
            lines: list[str] = []
            patient = asyncio.create_task(
                install_pack(box.cloud, box.ref, url, on_line=lines.append)
            )
            await asyncio.sleep(1.0)
            assert not patient.done() and not target.exists()
        result = await asyncio.wait_for(patient, 120)
    assert result.status == "installed" and result.classes == ("TurnTaker",)
    assert any("waiting for another change" in line and "Busy-Pack" in line for line in lines)
