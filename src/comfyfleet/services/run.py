"""Run one workflow on one ComfyUI server and bring its outputs home.

load -> convert (UI format) -> overrides -> upload inputs -> validate -> submit -> watch ->
download + verify -> manifest. The job is done only when every output is on local disk with
its sha256 recorded in `<out>/<job-id>/manifest.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.comfy.workflow.load import load_workflow
from comfyfleet.comfy.workflow.overrides import apply_overrides, apply_uploads, parse_inputs
from comfyfleet.comfy.workflow.validate import ensure_valid
from comfyfleet.config import Settings
from comfyfleet.errors import ComfyfleetError, JobTimeout
from comfyfleet.models.comfy import PromptResult
from comfyfleet.models.events import Event
from comfyfleet.services.outputs import SavedFile, download_outputs, files_json, write_manifest
from comfyfleet.services.targets import Target
from comfyfleet.services.workflows import prepare_prompt
from comfyfleet.util.clock import Clock, SystemClock


@dataclass(frozen=True)
class Stage:
    """A step of the run, for progress display: `name` is a stable word, `detail` free text."""

    name: str
    detail: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # node id -> "Title (Class)"


Progress = Callable[[Stage | Event], None]


@dataclass(frozen=True)
class RunRequest:
    """What `comfyfleet run` was asked to do."""

    workflow: Path
    target: Target
    sets: Sequence[str] = ()
    inputs: Sequence[str] = ()
    out_dir: Path = Path("outputs")
    timeout: float = 3600.0
    job_id: str | None = None


@dataclass
class RunReport:
    """The outcome of a successful run."""

    job_id: str
    prompt_id: str
    job_dir: Path
    manifest_path: Path
    files: list[SavedFile]
    node_timings: dict[str, float]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    from_history: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "prompt_id": self.prompt_id,
            "job_dir": str(self.job_dir),
            "manifest": str(self.manifest_path),
            "files": files_json(self.files),
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def node_labels(prompt: Mapping[str, Any]) -> dict[str, str]:
    """Node id -> "Title (Class)" (or just the class), for progress display."""
    labels: dict[str, str] = {}
    for node_id, node in prompt.items():
        cls = str(node.get("class_type", "?"))
        title = (node.get("_meta") or {}).get("title")
        labels[node_id] = f"{title} ({cls})" if title and title != cls else cls
    return labels


def new_job_id(clock: Clock) -> str:
    """A sortable, unique job id: UTC time plus random hex."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(clock.now()))
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


async def run_workflow(
    request: RunRequest,
    settings: Settings,
    *,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> RunReport:
    """Run `request.workflow` on `request.target`; raise a ComfyfleetError on any failure.

    Cancellation (Ctrl+C) interrupts the remote prompt before it propagates; so does a timeout.
    """
    clock = clock or SystemClock()
    notify: Progress = progress or (lambda _item: None)
    started = clock.monotonic()
    job_id = request.job_id or new_job_id(clock)
    input_files = parse_inputs(request.inputs)
    # Read before connecting: a missing or broken file fails at once, offline.
    loaded = load_workflow(request.workflow)
    async with ComfyClient(
        request.target.url, token=request.target.token, settings=settings.comfy, clock=clock
    ) as client:
        notify(Stage("connecting", request.target.display))
        catalog, stats = await asyncio.gather(client.object_info(), client.system_stats())
        notify(Stage("preparing", str(request.workflow)))
        prepared = prepare_prompt(loaded, catalog)
        prompt, changes = apply_overrides(prepared.api, catalog, request.sets)
        uploaded: dict[tuple[str, str], str] = {}
        for item in input_files:
            notify(Stage("uploading", str(item.path)))
            ref = await client.upload_image(item.path)
            uploaded[(item.node, item.input)] = ref.annotated_name
        prompt, upload_changes = apply_uploads(prompt, catalog, input_files, uploaded)
        notify(Stage("validating"))
        if uploaded:
            catalog = await client.object_info(refresh=True)
        ensure_valid(prompt, catalog)
        prompt_id = str(uuid.uuid4())
        extra: dict[str, Any] = {}
        if prepared.ui is not None:
            extra["extra_pnginfo"] = {"workflow": prepared.ui}
        async with client.events() as stream:
            notify(Stage("submitting", prompt_id, node_labels(prompt)))
            accepted = await client.queue_prompt(prompt, prompt_id=prompt_id, extra_data=extra)
            notify(Stage("running", prompt_id))
            result = await _watch(client, stream, prompt_id, request.timeout, notify)
        job_dir = (request.out_dir / job_id).resolve()
        job_dir.mkdir(parents=True, exist_ok=True)
        notify(Stage("downloading", str(job_dir)))
        files = await download_outputs(client, result, job_dir)
    seconds = clock.monotonic() - started
    warnings = [
        f"node {ne.node_id} ({ne.class_type}) skipped: "
        + "; ".join(e.describe() for e in ne.errors)
        for ne in accepted.node_errors
    ]
    manifest = {
        "job_id": job_id,
        "prompt_id": prompt_id,
        "target": request.target.display,
        "comfyui_version": stats.comfyui_version,
        "workflow": {
            "path": str(request.workflow),
            "format": prepared.format,
            "source_sha256": prepared.source_sha256,
            "prompt_sha256": prepared.prompt_sha256(prompt),
        },
        "parameters": {
            "set": list(request.sets),
            "input": [str(i.path) for i in input_files],
            "changes": [c.to_json() for c in (*changes, *upload_changes)],
        },
        "files": files_json(files),
        "timings": _timings(result, prompt),
        "started_at": clock.now() - seconds,
        "seconds": round(seconds, 3),
        "result_source": "history" if result.from_history else "websocket",
        "warnings": warnings,
    }
    path = write_manifest(job_dir, manifest)
    notify(Stage("done", str(job_dir)))
    return RunReport(
        job_id,
        prompt_id,
        job_dir,
        path,
        files,
        dict(result.node_timings),
        seconds,
        warnings,
        result.from_history,
    )


async def _watch(
    client: ComfyClient, stream: Any, prompt_id: str, timeout: float, notify: Progress
) -> PromptResult:
    try:
        return await client.wait_for(prompt_id, on_event=notify, timeout=timeout, stream=stream)
    except (asyncio.CancelledError, KeyboardInterrupt, JobTimeout):
        await _abandon(client, prompt_id)
        raise


async def _abandon(client: ComfyClient, prompt_id: str) -> None:
    """Stop a prompt we no longer wait for: drop it from the queue, interrupt it if running."""
    # The run is already failing; the original error is the one to report.
    with contextlib.suppress(ComfyfleetError, asyncio.CancelledError):
        await asyncio.shield(_stop_remote(client, prompt_id))


async def _stop_remote(client: ComfyClient, prompt_id: str) -> None:
    await client.delete_queued([prompt_id])
    await client.interrupt(prompt_id)


def _timings(result: PromptResult, prompt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for node_id, seconds in result.node_timings.items():
        node = prompt.get(node_id, {})
        out[node_id] = {
            "class_type": node.get("class_type"),
            "title": (node.get("_meta") or {}).get("title"),
            "seconds": round(seconds, 4),
            "cached": node_id in result.cached,
        }
    for node_id in result.cached:
        if node_id not in out and node_id in prompt:
            out[node_id] = {
                "class_type": prompt[node_id].get("class_type"),
                "title": (prompt[node_id].get("_meta") or {}).get("title"),
                "seconds": 0.0,
                "cached": True,
            }
    return out
