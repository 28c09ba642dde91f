"""`control.prepare_plan`: what prepare does for each state of a class or file (tables)."""

from __future__ import annotations

import pytest

from comfyfleet.catalog import Candidate, ModelSource, NodeResolution, Pack
from comfyfleet.control.prepare_plan import ClassNeed, FileNeed, plan_prepare

GIT = frozenset({"git-clone", "cnr"})
IMPACT = Pack("comfyui-impact-pack", "https://github.com/ltdrdata/ComfyUI-Impact-Pack")
OTHER = Pack("other-pack", "https://github.com/o/other-pack")
COPIED = Pack("one-file", "https://example.com/one_file.py", install_type="copy")


def chosen(pack: Pack, version: str | None = None) -> NodeResolution:
    cand = Candidate(pack, "extension-node-map", "exact", version=version)
    return NodeResolution("X", candidates=(cand,), chosen=cand)


AMBIGUOUS = NodeResolution(
    "X",
    candidates=(
        Candidate(IMPACT, "extension-node-map", "exact"),
        Candidate(OTHER, "extension-node-map", "exact"),
    ),
)


@pytest.mark.parametrize(
    ("need", "pack", "reason"),
    [
        (ClassNeed("KSampler", True), None, None),
        (ClassNeed("A", False, chosen(IMPACT)), ("comfyui-impact-pack", IMPACT.repo), None),
        (ClassNeed("A", False, AMBIGUOUS), None, "ambiguous"),
        (ClassNeed("A", False, NodeResolution("A")), None, "unknown"),
        (ClassNeed("A", False, None), None, "unknown"),
        (ClassNeed("A", False, NodeResolution("A", core=True)), None, "core"),
        (ClassNeed("A", False, chosen(COPIED)), None, "not-git"),
        # a URL given with --pack wins over what the catalogs say, even when they cannot tell
        (ClassNeed("A", False, AMBIGUOUS, "file:///srv/p.git"), ("p", "file:///srv/p.git"), None),
        (ClassNeed("A", False, chosen(COPIED), "https://h/o/r"), ("r", "https://h/o/r"), None),
    ],
)
def test_one_class(need: ClassNeed, pack: tuple[str, str] | None, reason: str | None) -> None:
    plan = plan_prepare([need], [], git_installs=GIT)
    assert [(s.label, s.source) for s in plan.packs] == ([pack] if pack else [])
    assert [u.reason for u in plan.unresolved] == ([reason] if reason else [])
    for u in plan.unresolved:
        assert u.fix, u


def test_classes_of_one_pack_install_it_once_in_class_order() -> None:
    plan = plan_prepare(
        [
            ClassNeed("B", False, chosen(OTHER)),
            ClassNeed("A", False, chosen(IMPACT, version="1.2.3")),
            ClassNeed("C", False, chosen(Pack("same", IMPACT.repo + ".git"))),
            ClassNeed("D", False, chosen(COPIED)),
            ClassNeed("E", False, chosen(COPIED)),
        ],
        [],
        git_installs=GIT,
    )
    assert [(s.label, s.classes) for s in plan.packs] == [
        ("other-pack", ("B",)),
        ("comfyui-impact-pack", ("A", "C")),
    ]
    assert plan.packs[1].recorded_version == "1.2.3"
    (copied,) = plan.unresolved
    assert (copied.kind, copied.item, copied.reason) == ("pack", "one-file", "not-git")
    assert "D, E" in copied.detail


SOURCE = ModelSource("url", "https://h/x.safetensors", "loras", "x.safetensors")


@pytest.mark.parametrize(
    ("need", "pulled", "present", "reason"),
    [
        (FileNeed("loras", "x.safetensors", True), [], ["loras/x.safetensors"], None),
        (FileNeed("loras", "x.safetensors", False, (SOURCE,)), ["loras/x.safetensors"], [], None),
        (FileNeed("loras", "x.safetensors", False), [], [], "no-source"),
    ],
)
def test_one_file(
    need: FileNeed, pulled: list[str], present: list[str], reason: str | None
) -> None:
    plan = plan_prepare([], [need], git_installs=GIT)
    assert [m.path for m in plan.models] == pulled
    assert list(plan.present_models) == present
    assert [u.reason for u in plan.unresolved] == ([reason] if reason else [])
    assert plan.empty == (not pulled)


def test_a_file_without_source_says_why_and_how() -> None:
    need = FileNeed("vae", "v.pt", False, problems=("Civitai needs the network",))
    (u,) = plan_prepare([], [need], git_installs=GIT).unresolved
    assert u.detail == "Civitai needs the network"
    assert u.fix and "--folder vae --name v.pt" in u.fix
