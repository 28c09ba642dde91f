"""`prepare` on a sandbox instance: a pack the catalog stand-in lists (a local git repository
cloned over SSH, its requirements from the host's wheelhouse) and a checkpoint the model
server serves, then one restart, validation against the live ComfyUI, and a warm-up run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.nodes.packs import commit, make_pack

from comfyfleet.errors import UnsafeSource, UsageError
from comfyfleet.services.prepare import PrepareRequest, prepare
from comfyfleet.state import EventKind

from .flows import (
    CHECKPOINT,
    PACK,
    PACK_CLASS,
    list_pack_in_catalog,
    make_prep_pack,
    make_simple_pack,
    serve_model,
    workflow,
)
from .world import World

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(240)]

CHANGES = (EventKind.NODES, EventKind.MODEL_PULLED)


async def test_prepare_installs_pulls_restarts_once_then_does_nothing(
    world: World, tmp_path: Path
) -> None:
    url = make_prep_pack(tmp_path / "repos")
    list_pack_in_catalog(world.server, url, [PACK_CLASS])
    second = make_simple_pack(tmp_path / "repos", "second_pack", "SecondNode", "ThirdNode")
    model_url, sha = serve_model(world.server, CHECKPOINT, 1)
    flow = workflow(
        tmp_path,
        "wf.json",
        model_url=model_url,
        model_sha=sha,
        extra_classes=("SecondNode", "ThirdNode"),
    )
    request = PrepareRequest(flow, "box", packs=(f"SecondNode={second}",))
    cloud = world.with_settings()
    pids = await world.comfy_pids("box")
    lines: list[str] = []

    report = await prepare(cloud, request, on_line=lines.append)

    assert report.runnable and report.exit_code == 0, report.to_json()
    assert report.outputs and report.unresolved == []
    pack, other = report.packs
    assert (pack.pack, pack.status, pack.classes) == (PACK, "installed", (PACK_CLASS,))
    assert pack.requirements == ("onnx==1.19.0",) and len(pack.commit) == 40
    # ThirdNode is missing too and no catalog knows it: the pack given for SecondNode has it
    assert (other.pack, other.classes) == ("second_pack", ("SecondNode", "ThirdNode"))
    assert report.warnings == ["ThirdNode (unknown in the catalogs) came with second_pack"]
    assert (world.comfy_dir("box") / "custom_nodes" / PACK / "__init__.py").is_file()
    pulled = {m.path: m for m in report.models}
    assert pulled[f"checkpoints/{CHECKPOINT}"].status == "downloaded"
    assert pulled[f"checkpoints/{CHECKPOINT}"].sha256 == sha
    model = world.comfy_dir("box") / "models" / "checkpoints" / CHECKPOINT
    assert model.read_bytes() == world.server.blobs[CHECKPOINT]
    # one restart for everything, after the installs
    assert report.restarted and sum("restarting ComfyUI" in line for line in lines) == 1
    assert await world.comfy_pids("box") != pids
    nodes = world.events("box", EventKind.NODES)
    assert [(e["pack"], e["result"], e.get("restart")) for e in nodes] == [
        (PACK, "installed", "deferred"),
        ("second_pack", "installed", "deferred"),
    ]

    # a second run changes nothing: no install, no download, no restart
    events = len(world.events("box", *CHANGES))
    gets = len(world.server.gets(CHECKPOINT))
    pids = await world.comfy_pids("box")
    lines.clear()
    again = await prepare(cloud, request, on_line=lines.append)
    assert again.runnable and not again.changed and again.packs == []
    assert {m.status for m in again.models} == {"present"}
    assert not again.restarted and not any("restarting" in line for line in lines)
    assert len(world.events("box", *CHANGES)) == events
    assert len(world.server.gets(CHECKPOINT)) == gets
    assert await world.comfy_pids("box") == pids


async def test_warm_up_runs_the_workflow_once(world: World, tmp_path: Path) -> None:
    model_url, sha = serve_model(world.server, CHECKPOINT, 1)
    flow = workflow(tmp_path, "wf.json", model_url=model_url, model_sha=sha)
    cloud = world.with_settings()
    kept = tmp_path / "warm"
    report = await prepare(cloud, PrepareRequest(flow, "box", warm_up=True, warm_up_dir=kept))
    assert report.runnable and report.warm_up is not None, report.to_json()
    assert report.warm_up.error is None and report.warm_up.seconds
    assert report.warm_up.files == 1 and report.warm_up.kept_in is not None
    manifest = json.loads((Path(report.warm_up.kept_in) / "manifest.json").read_text())
    assert [f["node_id"] for f in manifest["files"]] == ["9"]
    discarded = await prepare(cloud, PrepareRequest(flow, "box", warm_up=True))
    assert discarded.warm_up is not None and discarded.warm_up.kept_in is None
    assert discarded.exit_code == 0


BOOM = """
class BoomNote:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "tests"

    def run(self):
        raise RuntimeError("boom at run time")

NODE_CLASS_MAPPINGS = {"BoomNote": BoomNote}
"""


async def test_a_failing_warm_up_is_reported_with_its_exit_code(
    world: World, tmp_path: Path
) -> None:
    url = make_pack(tmp_path / "repos", "boom_pack", {"__init__.py": BOOM})
    model_url, sha = serve_model(world.server, CHECKPOINT, 1)
    flow = workflow(
        tmp_path, "wf.json", model_url=model_url, model_sha=sha, extra_classes=("BoomNote",)
    )
    request = PrepareRequest(flow, "box", packs=(f"BoomNote={url}",), warm_up=True)
    report = await prepare(world.with_settings(), request)
    assert report.runnable and report.warm_up is not None, report.to_json()
    assert report.warm_up.error and "boom at run time" in report.warm_up.error
    assert report.exit_code == 4  # execution failed, as `comfyfleet run` says it


async def test_what_cannot_be_resolved_is_reported(world: World, tmp_path: Path) -> None:
    """An unknown class, an ambiguous one, a pack the torch guard refuses, a file without a
    source: each reported with its fix, the rest still done, exit code 3."""
    repos = tmp_path / "repos"
    refused_url = make_simple_pack(repos, "old_torch", "OldTorchNode", requirements="torch<2.8\n")
    model_url, sha = serve_model(world.server, CHECKPOINT, 1)
    flow = workflow(
        tmp_path,
        "wf.json",
        model_url=model_url,
        model_sha=sha,
        extra_classes=("MysteryNode42", "PromptBuilder", "OldTorchNode"),
        checkpoint="nowhere_model.safetensors",
    )
    ui = json.loads(flow.read_text())
    for node in ui["nodes"]:
        node.get("properties", {}).pop("models", None)  # the checkpoint has no source now
    flow.write_text(json.dumps(ui))
    cloud = world.with_settings()
    request = PrepareRequest(flow, "box", packs=(f"OldTorchNode={refused_url}",), warm_up=True)
    report = await prepare(cloud, request)
    assert not report.runnable and report.exit_code == 3
    assert report.warm_up is not None and report.warm_up.skipped
    found = {(u.kind, u.item): u for u in report.unresolved}
    assert found[("node", "MysteryNode42")].reason == "unknown"
    assert "--pack MysteryNode42=" in (found[("node", "MysteryNode42")].fix or "")
    ambiguous = found[("node", "PromptBuilder")]
    assert ambiguous.reason == "ambiguous" and "--pack PromptBuilder=" in (ambiguous.fix or "")
    refused = found[("pack", "old_torch")]
    assert refused.reason == "refused" and "torch 2.8.0+cu128 -> 2.7.1+cu128" in refused.detail
    assert found[("model", "checkpoints/nowhere_model.safetensors")].reason == "no-source"
    assert found[("workflow", str(flow))].reason == "invalid"
    assert not (world.comfy_dir("box") / "custom_nodes" / "old_torch").exists()
    assert not report.restarted  # nothing was installed


async def test_a_pack_given_by_url_settles_a_class_and_updates_are_not_forced(
    world: World, tmp_path: Path
) -> None:
    repos = tmp_path / "repos"
    url = make_simple_pack(repos, "builder_pack", "PromptBuilder")
    model_url, sha = serve_model(world.server, CHECKPOINT, 1)
    flow = workflow(
        tmp_path, "wf.json", model_url=model_url, model_sha=sha, extra_classes=("PromptBuilder",)
    )
    cloud = world.with_settings()
    report = await prepare(cloud, PrepareRequest(flow, "box", packs=(f"PromptBuilder={url}",)))
    assert report.runnable, report.to_json()
    assert [(p.pack, p.status, p.classes) for p in report.packs] == [
        ("builder_pack", "installed", ("PromptBuilder",))
    ]
    # a new commit upstream: the class is there, so prepare leaves the pack as it is
    commit(repos / "builder_pack", {"extra.txt": "x"}, "second")
    again = await prepare(cloud, PrepareRequest(flow, "box", packs=(f"PromptBuilder={url}",)))
    assert again.runnable and not again.changed


async def test_bad_input_is_refused_before_anything_changes(world: World, tmp_path: Path) -> None:
    model_url, sha = serve_model(world.server, CHECKPOINT, 1)
    flow = workflow(tmp_path, "wf.json", model_url=model_url, model_sha=sha)
    cloud = world.with_settings()
    events = len(world.events("box", *CHANGES))
    with pytest.raises(UnsafeSource):
        await prepare(cloud, PrepareRequest(flow, "box", packs=("PrepNote=file:///x;rm -rf /",)))
    with pytest.raises(UsageError, match="does not use"):
        await prepare(cloud, PrepareRequest(flow, "box", packs=("Nope=file:///srv/pack",)))
    with pytest.raises(UsageError, match="CLASS=PACK"):
        await prepare(cloud, PrepareRequest(flow, "box", packs=("no-equals-sign",)))
    with pytest.raises(UsageError, match="no such file"):
        await prepare(cloud, PrepareRequest(tmp_path / "missing.json", "box"))
    assert len(world.events("box", *CHANGES)) == events
