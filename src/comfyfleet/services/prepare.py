"""Make an instance run a workflow, in one step (`comfyfleet prepare WORKFLOW ID`).

    report = await prepare(cloud, PrepareRequest(Path("wf.json"), "studio"), on_line=print)
    report.runnable        # ComfyUI on the instance accepts the workflow now
    report.unresolved      # what could not be settled, each with the way out

deps -> install nodes -> pull models -> restart -> validate -> optional warm-up:

1. What the workflow needs, against the instance's live /object_info and model folders
   (`deps.workflow_needs`; `--pack CLASS=PACK` settles ambiguous classes; a git URL there
   is installed as given, whatever the catalogs say).
2. The plan (`control.prepare_plan`): packs to install, files to pull, what nothing settles.
3. Each pack is installed through the torch-guarded installer without restarting ComfyUI
   (`install_pack(restart=False)`); a refused or failed pack is reported, the others go on.
4. Each missing file is pulled on the instance from its first source that works (sha256
   checked; a file already in place is never downloaded again).
5. ComfyUI is restarted once, only when a pack was installed, and each pack checked: its
   IMPORT FAILED lines are reported.
6. The workflow is converted and validated against the fresh /object_info (whose model
   inputs list the files the instance has now), exactly as ComfyUI would.
7. With `warm_up`, one real run (`run.run_workflow`); its outputs go to a temporary folder
   (deleted) or `warm_up_dir`.

Nothing is done twice: a second prepare finds every class and file present and installs,
downloads and restarts nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.comfy.workflow.load import load_workflow
from comfyfleet.comfy.workflow.validate import ensure_valid
from comfyfleet.control.prepare_plan import (
    ClassNeed,
    FileNeed,
    PackStep,
    PreparePlan,
    Unresolved,
    plan_prepare,
)
from comfyfleet.errors import ComfyfleetError, UsageError, WorkflowError
from comfyfleet.remote.git import check_git_url
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.deps import WorkflowNeeds, parse_pack_choices, workflow_needs
from comfyfleet.services.models import PullResult
from comfyfleet.services.nodes import InstallResult
from comfyfleet.services.nodes_source import GIT_INSTALLS, looks_like_url
from comfyfleet.services.prepare_report import ModelDone, PackDone, PrepareReport, WarmUp
from comfyfleet.services.prepare_steps import (
    Progress,
    import_failure,
    install_deferred,
    instance_target,
    pull_first,
    restart_and_check,
)
from comfyfleet.services.run import RunRequest, run_workflow
from comfyfleet.services.targets import Target
from comfyfleet.services.workflows import prepare_prompt
from comfyfleet.util.lines import Line, quiet

__all__ = ["PrepareReport", "PrepareRequest", "prepare"]


@dataclass(frozen=True)
class PrepareRequest:
    workflow: Path
    ref: str  # the instance: Vast id or name
    packs: Sequence[str] = ()  # `CLASS=PACK`: a catalog id, GitHub owner/repo or a git URL
    warm_up: bool = False
    warm_up_dir: Path | None = None  # keep the warm-up's outputs here (default: deleted)
    warm_up_timeout: float = 3600.0  # the cloud's clock seconds


def split_choices(items: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """`--pack` values -> (catalog choices, class -> git URL installed as given)."""
    catalog: dict[str, str] = {}
    direct: dict[str, str] = {}
    for cls, pack in parse_pack_choices(items).items():
        if looks_like_url(pack):
            direct[cls] = check_git_url(pack)
        else:
            catalog[cls] = pack
    return catalog, direct


def _needs_to_plan(needs: WorkflowNeeds, direct: Mapping[str, str]) -> PreparePlan:
    classes = [
        ClassNeed(n.class_type, n.status == "present", n.resolution, direct.get(n.class_type))
        for n in needs.nodes
    ]
    files = [
        FileNeed(
            m.file.folder,
            m.file.name,
            m.status == "present",
            m.sources,
            m.resolution.problems if m.resolution else (),
        )
        for m in needs.models
    ]
    return plan_prepare(classes, files, git_installs=GIT_INSTALLS)


async def _refresh_catalog(target: Target, cloud: Cloud) -> None:
    """Read the instance's node classes fresh: the per-process cache (which `workflow_needs`
    reads) may predate packs installed since."""
    async with ComfyClient(
        target.url, token=target.token, settings=cloud.settings.comfy, clock=cloud.clock
    ) as client:
        await client.object_info(refresh=True)


async def prepare(
    cloud: Cloud,
    request: PrepareRequest,
    *,
    on_line: Line = quiet,
    on_progress: Progress | None = None,
) -> PrepareReport:
    """Make instance `request.ref` ready for `request.workflow` (see the module docstring)."""
    catalog_choices, direct = split_choices(request.packs)
    load_workflow(request.workflow)  # a missing or broken file fails before any contact
    target = await instance_target(cloud, request.ref)
    await _refresh_catalog(target, cloud)
    on_line(f"reading what {request.workflow} needs on {target.display}")
    needs = await workflow_needs(
        request.workflow, target=target, settings=cloud.settings, choices=catalog_choices
    )
    used = {n.class_type for n in needs.nodes}
    stray = sorted(set(direct) - used)
    if stray:
        raise UsageError(
            f"--pack names {', '.join(stray)}, which the workflow does not use",
            hint="give CLASS=PACK for a class the workflow lists",
        )
    plan = _needs_to_plan(needs, direct)
    report = PrepareReport(
        instance=target.name or request.ref,
        workflow=str(request.workflow),
        warnings=list(needs.warnings),
        unresolved=list(plan.unresolved),
        models=[ModelDone(path, "present") for path in plan.present_models],
    )
    installed = await _install(cloud, request.ref, plan.packs, report, on_line)
    for step in plan.models:
        got = await pull_first(
            cloud,
            request.ref,
            step.sources,
            item=step.path,
            on_progress=on_progress,
            on_line=on_line,
        )
        if isinstance(got, Unresolved):
            report.unresolved.append(got)
        else:
            report.models.append(_model_done(step.path, got))
    if installed:
        await _restart(cloud, request.ref, installed, report, on_line)
    await _validate(cloud, target, request, report, on_line)
    if request.warm_up and report.runnable:
        report.warm_up = await _warm_up(cloud, target, request, on_line)
    elif request.warm_up:
        report.warm_up = WarmUp(skipped=True)
    return report


async def _install(
    cloud: Cloud,
    ref: str,
    steps: Sequence[PackStep],
    report: PrepareReport,
    on_line: Line,
) -> list[tuple[PackStep, InstallResult]]:
    done: list[tuple[PackStep, InstallResult]] = []
    for step in steps:
        on_line(f"installing {step.label} for {', '.join(step.classes)}")
        got = await install_deferred(cloud, ref, step.source, label=step.label, on_line=on_line)
        if isinstance(got, Unresolved):
            report.unresolved.append(got)
            continue
        done.append((step, got))
    return done


def _model_done(path: str, result: PullResult) -> ModelDone:
    if result.status == "downloaded":
        return ModelDone(path, "downloaded", result.sha256, result.source, result.size)
    return ModelDone(path, "kept", result.sha256, result.source, result.size)


async def _restart(
    cloud: Cloud,
    ref: str,
    installed: Sequence[tuple[PackStep, InstallResult]],
    report: PrepareReport,
    on_line: Line,
) -> None:
    names = [result.pack for _, result in installed]
    restarted = await restart_and_check(
        cloud, ref, names, why="prepare installed " + ", ".join(names), on_line=on_line
    )
    report.restart_seconds = restarted.seconds
    for step, result in installed:
        found = restarted.packs[result.pack]
        failure = import_failure(result.pack, found)
        if failure is not None:
            report.unresolved.append(failure)
        classes = tuple(sorted(found.classes or ()))
        lacking = [c for c in step.classes if found.classes is not None and c not in classes]
        if failure is None and lacking:
            report.unresolved.append(
                Unresolved(
                    "pack",
                    result.pack,
                    "import-failed",
                    f"it loaded, but has no class {', '.join(lacking)}",
                    "the catalog may name the wrong pack: give the right one with "
                    f"--pack {lacking[0]}=GIT_URL",
                )
            )
        report.packs.append(PackDone.of(result, classes))


async def _validate(
    cloud: Cloud, target: Target, request: PrepareRequest, report: PrepareReport, on_line: Line
) -> None:
    """Convert and validate the workflow against the live /object_info, read fresh."""
    on_line("validating the workflow against the instance's ComfyUI")
    async with ComfyClient(
        target.url, token=target.token, settings=cloud.settings.comfy, clock=cloud.clock
    ) as client:
        catalog = await client.object_info(refresh=True)
    _settled_by_packs(report, set(catalog))
    try:
        prepared = prepare_prompt(request.workflow, catalog)
        report.outputs = ensure_valid(prepared.api, catalog)
    except WorkflowError as exc:
        report.unresolved.append(
            Unresolved("workflow", str(request.workflow), "invalid", exc.message, exc.hint)
        )
        return
    report.valid = True


def _settled_by_packs(report: PrepareReport, classes: set[str]) -> None:
    """Drop the classes nothing seemed to settle that a pack installed for another class
    brought along (a pack's classes are not all in the catalogs)."""
    for item in [u for u in report.unresolved if u.kind == "node" and u.item in classes]:
        report.unresolved.remove(item)
        by = next((p.pack for p in report.packs if item.item in p.classes), "a pack installed now")
        report.warnings.append(f"{item.item} ({item.reason} in the catalogs) came with {by}")


async def _warm_up(cloud: Cloud, target: Target, request: PrepareRequest, on_line: Line) -> WarmUp:
    on_line("warm-up: running the workflow once")
    with tempfile.TemporaryDirectory(prefix="comfyfleet-warm-up-") as scratch:
        out_dir = request.warm_up_dir or Path(scratch)
        run = RunRequest(request.workflow, target, out_dir=out_dir, timeout=request.warm_up_timeout)
        try:
            done = await run_workflow(run, cloud.settings, clock=cloud.clock)
        except ComfyfleetError as exc:
            return WarmUp(error=exc.message, exit_code=exc.exit_code)
        kept = str(done.job_dir) if request.warm_up_dir is not None else None
        on_line(f"warm-up done in {done.seconds:.1f} s ({len(done.files)} output file(s))")
        return WarmUp(done.seconds, done.job_id, len(done.files), kept)
