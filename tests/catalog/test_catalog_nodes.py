"""Node class -> pack resolution against ComfyUI-Manager's catalogs (the shipped copies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.catalog.fetch import CATALOG_FILES, shipped
from comfyfleet.catalog.nodes import NodeIndex
from comfyfleet.catalog.packs import PackHint
from comfyfleet.config import Settings
from comfyfleet.errors import UnsafeSource, UsageError
from comfyfleet.services.nodes_source import resolve_source


@pytest.fixture(scope="module")
def index() -> NodeIndex:
    return NodeIndex(shipped("node-map"), shipped("node-list"))


@pytest.mark.parametrize("name", sorted(CATALOG_FILES))
def test_shipped_copies_equal_the_shared_fixtures(manager_fixtures: Path, name: str) -> None:
    original = json.loads((manager_fixtures / CATALOG_FILES[name]).read_text(encoding="utf-8"))
    assert shipped(name) == original


# class, expected candidate pack ids (in order), chosen, why of the first candidate
TABLE: list[tuple[str, list[str], str | None, str]] = [
    # listed by exactly one pack
    ("ImpactWildcardProcessor", ["comfyui-impact-pack"], "comfyui-impact-pack", "exact"),
    ("MMakerColorBlend", ["sd-webui-color-enhance"], "sd-webui-color-enhance", "exact"),
    # listed by several packs: shown, none chosen
    (
        "PromptBuilder",
        ["ComfyUI-WildPromptor", "MultiModel", "ComfyUI-Lumina-DiMOO"],
        None,
        "exact",
    ),
    # listed by nobody, matched by Derfuu's `^DF_` nodename_pattern only
    ("DF_Integer", ["derfuu"], "derfuu", "pattern"),
    # preempted by ComfyUI-GGUF although another pack lists it as well
    (
        "UnetLoaderGGUF",
        ["comfyui-gguf", "ComfyUI-GGUF-FantasyTalking"],
        "comfyui-gguf",
        "preemption",
    ),
]


@pytest.mark.parametrize(("cls", "packs", "chosen", "why"), TABLE)
def test_resolution_table(
    index: NodeIndex, cls: str, packs: list[str], chosen: str | None, why: str
) -> None:
    res = index.resolve(cls)
    assert not res.core
    assert [c.pack.id for c in res.candidates] == packs
    assert res.candidates[0].why == why
    assert (res.chosen.pack.id if res.chosen else None) == chosen
    assert res.ambiguous == (chosen is None)
    if res.ambiguous:
        assert res.choose_hint() == f"--pack {cls}={packs[0]}"
    else:
        assert res.choose_hint() is None


def test_pattern_candidates_carry_the_pattern(index: NodeIndex) -> None:
    (cand,) = index.resolve("DF_Integer").candidates
    assert cand.detail == "^DF_"
    assert cand.pack.repo == "https://github.com/Derfuu/Derfuu_ComfyUI_ModdedNodes"


def test_unknown_class_is_reported_not_guessed(index: NodeIndex) -> None:
    res = index.resolve("NoSuchNodeAnywhere42")
    assert res.unknown and not res.candidates and res.chosen is None and not res.core


def test_core_classes_never_need_a_pack(index: NodeIndex, object_info_full: dict[str, Any]) -> None:
    # every class of a real ComfyUI that ComfyUI's own map entry lists is core
    core = [c for c in object_info_full if index.is_core(c)]
    assert len(core) > 400
    for cls in core:
        res = index.resolve(cls)
        assert res.core and not res.candidates and res.chosen is None and not res.ambiguous


def test_workflow_hints_come_first(index: NodeIndex) -> None:
    assert index.resolve("Anything", PackHint(cnr_id="comfy-core")).core
    res = index.resolve("PromptBuilder", PackHint(cnr_id="comfyui-wildpromptor", version="1.2"))
    assert res.chosen is not None and res.chosen.why == "cnr_id"
    assert res.chosen.version == "1.2" and res.chosen.source == "workflow"
    by_aux = index.resolve("SomeClass", PackHint(aux_id="ltdrdata/ComfyUI-Impact-Pack"))
    assert by_aux.chosen is not None and by_aux.chosen.pack.id == "comfyui-impact-pack"
    assert by_aux.chosen.why == "aux_id"
    unknown = index.resolve("PromptBuilder", PackHint(cnr_id="no-such-pack"))
    assert unknown.ambiguous and "no-such-pack" in unknown.notes[0]


@pytest.mark.parametrize(
    "ref",
    [
        "comfyui-impact-pack",
        "COMFYUI-IMPACT-PACK",
        "ltdrdata/ComfyUI-Impact-Pack",
        "https://github.com/ltdrdata/ComfyUI-Impact-Pack.git",
        "https://github.com/ltdrdata/comfyui-impact-pack/",
    ],
)
def test_packs_are_found_by_every_name(index: NodeIndex, ref: str) -> None:
    pack = index.pack(ref)
    assert pack is not None and pack.id == "comfyui-impact-pack"
    assert pack.install_type == "git-clone" and pack.registry_id == "comfyui-impact-pack"


def test_pack_ids_are_unique(index: NodeIndex) -> None:
    # packs without a registry id take their repository name; a name two packs share
    # becomes owner/repo, so every id a user may type names one pack
    by_id: dict[str, set[str]] = {}
    for cls in ("PreViewVideo", "ColorPalette", "ImageCaptioner", "Image2Video"):
        for cand in index.resolve(cls).candidates:
            by_id.setdefault(cand.pack.id.lower(), set()).add(cand.pack.repo.lower())
            assert index.pack(cand.pack.id) == cand.pack
    assert all(len(repos) == 1 for repos in by_id.values())


def test_packs_by_title(index: NodeIndex) -> None:
    found = index.pack_titled("comfyui   IMPACT pack")  # any case and spacing
    assert found is not None and found.id == "comfyui-impact-pack"
    assert index.pack_titled("impact pack") is None  # not a whole title
    like = [p.id for p in index.packs_titled("impact pack")]
    assert like[:2] == ["comfyui-impact-pack", "comfyui-impact-subpack"]
    # Titles holding the word come before packs that have it only in their id or repository.
    ranked = [p.title for p in index.packs_titled("impact", limit=3)]
    assert ranked == ["ComfyUI Impact Pack", "ComfyUI Impact Subpack", "IF_LLM"]
    assert index.packs_titled("no such words anywhere xyzzy") == []


async def test_nodes_install_takes_a_title_and_lists_titles_like_an_unknown_name(
    offline_settings: Settings,
) -> None:
    by_title = await resolve_source(offline_settings, "ComfyUI Impact Pack")
    assert by_title.pack_id == "comfyui-impact-pack" and by_title.name == "ComfyUI-Impact-Pack"
    with pytest.raises(UsageError) as caught:
        await resolve_source(offline_settings, "impact pack")
    assert "comfyui-impact-pack (ComfyUI Impact Pack)" in caught.value.message
    assert caught.value.hint and "one of these ids" in caught.value.hint
    with pytest.raises(UnsafeSource):  # shell characters never pass as a title
        await resolve_source(offline_settings, "Impact; rm -rf /")
