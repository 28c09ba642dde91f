"""`nodes ls` and `nodes rm` on a sandbox instance, and packs named through a catalog."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.catalog.standins import Standin

from comfyfleet.errors import PackImportFailed, UnsafeSource, UsageError
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.nodes import install_pack
from comfyfleet.services.nodes_manage import list_packs, remove_pack, update_pack
from comfyfleet.state import EventKind

from .conftest import Box, nodes_settings
from .packs import commit, make_pack, node_source

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(loop_scope="module")
async def catalog_cloud(box: Box, shared_dir: Path, tmp_path: Path) -> AsyncIterator[Cloud]:
    """The box's cloud with ComfyUI-Manager's node list served by a stand-in that names a
    local repository (and a pack ComfyUI-Manager installs by copying a file)."""
    url = make_pack(tmp_path / "repos", "ComfyUI-Lettering", {"__init__.py": node_source("Letter")})
    node_list = {
        "custom_nodes": [
            {
                "id": "comfyui-lettering",
                "title": "Lettering",
                "author": "someone",
                "reference": url,
                "files": [url],
                "install_type": "git-clone",
            },
            {
                "id": "single-file",
                "title": "Single file",
                "reference": "https://example.com/single",
                "files": ["https://example.com/raw/single.py"],
                "install_type": "copy",
            },
        ]
    }
    files = {"custom-node-list.json": json.dumps(node_list).encode()}
    async with Standin(shared_dir / "fixtures" / "comfyui-manager", files=files) as standin:
        settings = nodes_settings(
            box.base, **standin.env(tmp_path / "catalog-cache"), COMFYFLEET_CATALOG__REGISTRY="0"
        )
        yield box.with_settings(settings)


async def test_ls_shows_origin_commit_changes_and_import_state(box: Box, tmp_path: Path) -> None:
    good = make_pack(tmp_path, "good_pack", {"__init__.py": node_source("GoodA", "GoodB")})
    installed = await install_pack(box.cloud, box.ref, good)
    broken = make_pack(tmp_path, "broken_pack", {"__init__.py": "import no_such_module\n"})
    with pytest.raises(PackImportFailed):
        await install_pack(box.cloud, box.ref, broken)
    (box.custom_nodes / "old_pack.disabled").mkdir()
    (box.custom_nodes / "old_pack.disabled" / "__init__.py").write_text("raise SystemExit\n")
    (box.custom_nodes / "good_pack" / "__init__.py").write_text(
        node_source("GoodA", "GoodB") + "# edited on the instance\n"
    )
    listing = await list_packs(box.cloud, box.ref)
    assert listing.comfy_answered and listing.log_read
    packs = {p.entry.name: p for p in listing.packs}
    expected = {"broken_pack", "good_pack", "old_pack.disabled", "websocket_image_save.py"}
    assert expected <= set(packs)
    g = packs["good_pack"]
    assert (g.entry.url, g.entry.commit, g.entry.dirty) == (good, installed.commit, True)
    assert (g.imported, g.classes) == (True, 2)
    b = packs["broken_pack"]
    assert b.imported is False and b.classes == 0
    assert b.import_line is not None and b.import_line.endswith(
        f"(IMPORT FAILED): {box.custom_nodes / 'broken_pack'}"
    )
    d = packs["old_pack.disabled"]
    assert d.entry.disabled and d.imported is None and d.entry.url is None
    stock = packs["websocket_image_save.py"]
    assert stock.entry.kind == "file" and stock.imported is True and stock.classes == 1
    names = [p["name"] for p in listing.to_json()["packs"]]
    assert names == sorted(names, key=str.lower)


async def test_rm_removes_the_pack_and_its_classes(box: Box, tmp_path: Path) -> None:
    url = make_pack(tmp_path, "rm_me", {"__init__.py": node_source("GoneA", "GoneB")})
    installed = await install_pack(box.cloud, box.ref, url)
    removed = await remove_pack(box.cloud, box.ref, "rm_me")
    assert removed.classes == ("GoneA", "GoneB") and removed.restarted
    assert any("requirements stay" in n for n in removed.notes)
    assert not (box.custom_nodes / "rm_me").exists()
    listing = await list_packs(box.cloud, box.ref)
    assert "rm_me" not in {p.entry.name for p in listing.packs}
    details = [e.detail for e in box.cloud.db.instances.events(box.row.id) if e.kind == "nodes"]
    assert details[-1] == {
        "action": "remove",
        "pack": "rm_me",
        "url": url,
        "commit": installed.commit,
        "classes": 2,
    }
    assert box.cloud.db.instances.events(box.row.id)[-1].kind == EventKind.NODES


async def test_rm_of_a_disabled_pack_needs_no_restart(box: Box) -> None:
    (box.custom_nodes / "parked.disabled").mkdir()
    (box.custom_nodes / "parked.disabled" / "__init__.py").write_text("raise SystemExit\n")
    removed = await remove_pack(box.cloud, box.ref, "parked.disabled")
    assert not removed.restarted and not (box.custom_nodes / "parked.disabled").exists()


async def test_rm_removes_a_symlink_not_what_it_points_to(box: Box, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me\n")
    (box.custom_nodes / "linked").symlink_to(outside, target_is_directory=True)
    listing = await list_packs(box.cloud, box.ref)
    linked = next(p for p in listing.packs if p.entry.name == "linked")
    assert linked.entry.link == str(outside)
    await remove_pack(box.cloud, box.ref, "linked")
    assert (
        not (box.custom_nodes / "linked").exists()
        and not (box.custom_nodes / "linked").is_symlink()
    )
    assert (outside / "keep.txt").read_text() == "keep me\n"


async def test_rm_refuses_hostile_and_unknown_names(box: Box, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for hostile in (f"x;touch {marker}", "$(id)", "../ComfyUI", "a b", "`id`"):
        with pytest.raises(UnsafeSource):
            await remove_pack(box.cloud, box.ref, hostile)
    with pytest.raises(UsageError, match=r"no custom node pack 'nothing_here'.*websocket_"):
        await remove_pack(box.cloud, box.ref, "nothing_here")
    assert not marker.exists()
    assert (box.custom_nodes / "websocket_image_save.py").is_file()


async def test_a_pack_named_by_its_catalog_id(catalog_cloud: Cloud, box: Box) -> None:
    result = await install_pack(catalog_cloud, box.ref, "comfyui-lettering")
    assert (result.pack, result.classes) == ("ComfyUI-Lettering", ("Letter",))
    events = [e.detail for e in box.cloud.db.instances.events(box.row.id) if e.kind == "nodes"]
    assert events[-1] and events[-1]["catalog_id"] == "comfyui-lettering"
    with pytest.raises(UsageError, match="installed by copy of files"):
        await install_pack(catalog_cloud, box.ref, "single-file")
    removed = await remove_pack(catalog_cloud, box.ref, "comfyui-lettering")
    assert removed.pack == "ComfyUI-Lettering" and removed.classes == ("Letter",)


async def test_update_brings_a_pack_to_its_latest_commit(box: Box, tmp_path: Path) -> None:
    url = make_pack(tmp_path, "evolving_pack", {"__init__.py": node_source("EvolveA")})
    first = await install_pack(box.cloud, box.ref, url)
    repo = Path(url.removeprefix("file://"))
    newer = commit(repo, {"__init__.py": node_source("EvolveA", "EvolveB")}, "add EvolveB")
    lines: list[str] = []
    updated = await update_pack(box.cloud, box.ref, "evolving_pack", on_line=lines.append)
    assert updated.status == "updated" and updated.commit == newer
    assert updated.previous_commit == first.commit
    assert updated.classes == ("EvolveA", "EvolveB")  # restarted, and ComfyUI loaded the new one
    again = await update_pack(box.cloud, box.ref, "evolving_pack")
    assert again.status == "already-installed" and again.commit == newer
    back = await update_pack(box.cloud, box.ref, "evolving_pack", git_ref=first.commit)
    assert back.status == "updated" and back.classes == ("EvolveA",)
    with pytest.raises(UsageError, match="has no custom node pack 'never_installed'"):
        await update_pack(box.cloud, box.ref, "never_installed")
    await remove_pack(box.cloud, box.ref, "evolving_pack")
