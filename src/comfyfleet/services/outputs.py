"""Outputs of a finished prompt: safe local paths, verified downloads, the job manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.errors import OutputError
from comfyfleet.models.comfy import FileRef, PromptResult
from comfyfleet.util.paths import UnsafePath, contained, safe_relative, unique_path


@dataclass(frozen=True)
class SavedFile:
    """One output on local disk, verified: where it came from, where it is, size and sha256."""

    node_id: str
    path: str  # relative to the job folder, '/'-separated
    size: int
    sha256: str
    filename: str
    subfolder: str
    type: str


def output_refs(result: PromptResult) -> list[tuple[str, FileRef]]:
    """Every file a prompt produced, as (node id, reference), in node then list order."""
    refs: list[tuple[str, FileRef]] = []
    for node_id, output in result.outputs.items():
        refs.extend((node_id, ref) for ref in output.files)
    return refs


def local_path(job_dir: Path, ref: FileRef) -> Path:
    """Where a server file goes inside `job_dir`; temp files (previews) go under `temp/`.

    Names come from the server and are untrusted: anything that could escape `job_dir`
    raises OutputError.
    """
    try:
        prefix = "temp" if ref.type == "temp" else ""
        relative = safe_relative(prefix, ref.subfolder, ref.filename)
        return contained(job_dir, relative)
    except UnsafePath as exc:
        raise OutputError(
            f"refusing output file {ref.filename!r} (subfolder {ref.subfolder!r}): {exc}",
            hint="the server named an output with a path that would leave the output folder",
        ) from exc


async def download_outputs(
    client: ComfyClient, result: PromptResult, job_dir: Path
) -> list[SavedFile]:
    """Download every output of `result` into `job_dir`, each verified by size and sha256."""
    saved: list[SavedFile] = []
    for node_id, ref in output_refs(result):
        dest = unique_path(local_path(job_dir, ref))
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = await client.download(ref, dest)
        rel = dest.relative_to(job_dir.resolve()).as_posix()
        saved.append(
            SavedFile(node_id, rel, got.size, got.sha256, ref.filename, ref.subfolder, ref.type)
        )
    return saved


def write_manifest(job_dir: Path, manifest: Mapping[str, Any]) -> Path:
    """Write `manifest.json` atomically (a reader never sees half a file)."""
    path = job_dir / "manifest.json"
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def files_json(files: Iterable[SavedFile]) -> list[dict[str, Any]]:
    return [asdict(f) for f in files]
