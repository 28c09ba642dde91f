"""Workflow use-cases: load a node catalog, convert, validate, list dependencies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.comfy.workflow.convert import ui_to_api
from comfyfleet.comfy.workflow.deps import WorkflowDeps, deps_of_workflow
from comfyfleet.comfy.workflow.load import LoadedWorkflow, load_workflow
from comfyfleet.comfy.workflow.validate import ensure_valid
from comfyfleet.config import Settings
from comfyfleet.errors import UsageError
from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.services.targets import CloudOpener, resolve_target


def canonical_sha256(data: Any) -> str:
    """sha256 of JSON with sorted keys and no spaces: the same graph always hashes the same."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PreparedWorkflow:
    """A workflow in API format, with where it came from."""

    format: Literal["api", "ui"]
    api: dict[str, Any]
    ui: dict[str, Any] | None
    source_sha256: str

    @staticmethod
    def prompt_sha256(prompt: Mapping[str, Any]) -> str:
        return canonical_sha256(prompt)


def prepare_prompt(source: Path | LoadedWorkflow, catalog: NodeCatalog) -> PreparedWorkflow:
    """The workflow at `source` (a path, or one already loaded; UI or API format) in API
    format, converted with `catalog`."""
    loaded = source if isinstance(source, LoadedWorkflow) else load_workflow(source)
    if loaded.format == "ui":
        assert loaded.ui is not None
        return PreparedWorkflow("ui", ui_to_api(loaded.ui, catalog), dict(loaded.ui), loaded.sha256)
    assert loaded.api is not None
    return PreparedWorkflow("api", dict(loaded.api), None, loaded.sha256)


def load_object_info_file(path: Path) -> NodeCatalog:
    """Read a saved /object_info answer (JSON) into a catalog."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(
            f"object_info file {path} does not exist",
            hint="save one with: curl http://HOST:8188/object_info -o object_info.json",
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"object_info file {path} is not readable JSON: {exc}",
            hint="it must be the JSON body of GET /object_info",
        ) from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(
            f"object_info file {path} is not an /object_info answer",
            hint="it must map node class names to node definitions",
        )
    return NodeCatalog(data)


async def load_catalog(
    settings: Settings,
    *,
    object_info: Path | None,
    target: str | None,
    token: str | None = None,
    open_cloud: CloudOpener | None = None,
) -> NodeCatalog:
    """The node catalog from a file (`--object-info`) or a live server (`--target`)."""
    if (object_info is None) == (target is None):
        raise UsageError(
            "give exactly one of --object-info FILE or --target URL",
            hint="--object-info reads a saved /object_info; --target asks a running server "
            "(a URL, or an instance id or name)",
        )
    if object_info is not None:
        return load_object_info_file(object_info)
    assert target is not None
    endpoint = await resolve_target(target, settings, token=token, open_cloud=open_cloud)
    async with ComfyClient(endpoint.url, token=endpoint.token, settings=settings.comfy) as client:
        return await client.object_info()


def convert_workflow(path: Path, catalog: NodeCatalog) -> dict[str, Any]:
    """API format of `path`; an API-format file comes back unchanged."""
    return prepare_prompt(path, catalog).api


def validate_workflow(path: Path, catalog: NodeCatalog) -> list[str]:
    """Validate `path` as the server would; return the output node ids that would run."""
    prepared = prepare_prompt(path, catalog)
    return ensure_valid(prepared.api, catalog)


def workflow_deps(path: Path, catalog: NodeCatalog | None = None) -> WorkflowDeps:
    """Node classes, model files per folder and input files `path` needs."""
    return deps_of_workflow(load_workflow(path), catalog)
