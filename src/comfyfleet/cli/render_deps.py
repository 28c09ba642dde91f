"""Terminal rendering of what a workflow needs (`comfyfleet workflow deps`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console

from comfyfleet.cli.console import stderr_console

if TYPE_CHECKING:
    from comfyfleet.services.deps import ModelNeed, NodeNeed, WorkflowNeeds

_WHY = {
    "cnr_id": "recorded in the workflow",
    "aux_id": "recorded in the workflow",
    "preemption": "claims this class",
    "exact": "lists this class",
    "pattern": "name pattern",
    "registry": "Comfy Registry",
    "user": "your choice",
}


def _ids(node_ids: tuple[str, ...]) -> str:
    if not node_ids:
        return ""
    shown = ", ".join(node_ids[:6]) + (", …" if len(node_ids) > 6 else "")
    return f" (node{'s' if len(node_ids) > 1 else ''} {shown})"


def _node_lines(need: NodeNeed) -> list[str]:
    res = need.resolution
    head = f"  {need.status:8} {need.class_type}{_ids(need.use.node_ids)}"
    if res is None:
        return [head]
    if res.core:
        return [head + "  ships with ComfyUI: update the target's ComfyUI"]
    if res.unknown:
        return [head + "  unknown: no catalog lists it (install its pack with --pack CLASS=URL)"]
    lines = [head]
    for cand in res.candidates:
        mark = "→" if res.chosen is cand else " "
        version = f" @ {cand.version}" if cand.version else ""
        lines.append(
            f"      {mark} {cand.pack.id}{version}  {cand.pack.title}  {cand.pack.repo}  "
            f"[{_WHY[cand.why]}]"
        )
    if res.ambiguous:
        lines.append(f"      several packs provide it: choose with {res.choose_hint()}")
    lines += [f"      note: {n}" for n in res.notes]
    return lines


def _model_lines(need: ModelNeed) -> list[str]:
    head = f"  {need.status:8} {need.file.path}{_ids(need.file.node_ids)}"
    lines = [head]
    if need.present_as:
        lines.append(f"      the target has it as: {', '.join(need.present_as)}")
    for source in need.sources:
        token = "  (needs a token)" if source.needs_token else ""
        digest = f"  sha256 {source.sha256[:12]}…" if source.sha256 else ""
        lines.append(f"      {source.kind:11} {source.spec}  [{source.origin}]{digest}{token}")
    problems = need.resolution.problems if need.resolution else ()
    lines += [f"      problem: {p}" for p in problems]
    if not need.sources:
        lines.append("      no source known: add it to your models manifest")
    return lines


def print_deps(needs: WorkflowNeeds) -> None:
    """Missing node classes with their packs, missing files with their sources, what next."""
    out = Console(highlight=False, soft_wrap=True)
    where = f" on {needs.target.display}" if needs.target else ""
    out.print(f"[bold]{needs.workflow}[/]{where}", markup=True)
    lacking = needs.missing_nodes
    summary = _count(len(needs.nodes), "node class", "node classes")
    if needs.checked_nodes:
        summary += f", {len(lacking)} missing"
    else:
        core = sum(1 for n in needs.nodes if n.status == "core")
        summary += f", {core} ship with ComfyUI, {len(lacking)} from node packs"
    out.print(f"[bold]nodes[/]: {summary}")
    for need in lacking:
        for line in _node_lines(need):
            out.print(line, markup=False)
    files = needs.missing_models
    summary = _count(len(needs.models), "model file", "model files")
    summary += f", {len(files)} missing" if needs.checked_models else ", none checked on a server"
    out.print(f"[bold]models[/]: {summary}")
    for file in files:
        for line in _model_lines(file):
            out.print(line, markup=False)
    if needs.deps.inputs:
        names = ", ".join(i.name for i in needs.deps.inputs)
        out.print(f"[bold]inputs[/]: {names}  (uploaded by comfyfleet run --input)")
    for warning in needs.warnings:
        stderr_console().print(f"warning: {warning}", markup=False)
    commands = needs.next_commands()
    if commands:
        out.print("[bold]next[/]:")
        if needs.unsettled:
            out.print("  settle what is unresolved above, then run prepare; what can be done now:")
        else:
            out.print(f"  {commands.pop(0)}", markup=False)
            if commands:
                out.print("  or step by step:")
        for command in commands:
            out.print(f"  {command}", markup=False)
    elif needs.checked_nodes or needs.checked_models:
        out.print("everything the workflow needs is there")
    if needs.blocking:
        stderr_console().print(
            "error: some of what the workflow needs cannot be resolved (see above)", markup=False
        )
    sys.stdout.flush()


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
