"""`comfyfleet workflow convert|validate|deps`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.comfy.workflow.deps import WorkflowDeps

app = typer.Typer(help="Convert, validate and inspect workflows (UI or API format).")

WORKFLOW_ARG = typer.Argument(..., help="Workflow file: UI format (as saved), API format or PNG.")
OBJECT_INFO = typer.Option(None, "--object-info", help="A saved GET /object_info answer (JSON).")
TARGET = typer.Option(
    None, "--target", help="A ComfyUI URL, or an instance id or name, to read /object_info from."
)
TOKEN = typer.Option(None, "--token", envvar="COMFYFLEET_COMFY__TOKEN", hidden=True)
JSON_OUT = typer.Option(False, "--json", help="Print JSON for scripts.")


@app.command("convert")
def convert(
    ctx: typer.Context,
    workflow: Path = WORKFLOW_ARG,
    object_info: Path | None = OBJECT_INFO,
    target: str | None = TARGET,
    output: Path | None = typer.Option(None, "-o", "--output", help="Write API JSON here."),
    token: str | None = TOKEN,
) -> None:
    """Convert a UI-format workflow to API format, exactly as ComfyUI's frontend does."""
    import json

    from comfyfleet.services.workflows import convert_workflow, load_catalog

    settings = global_options(ctx).settings()

    async def _main() -> dict[str, object]:
        catalog = await load_catalog(settings, object_info=object_info, target=target, token=token)
        return convert_workflow(workflow, catalog)

    api = run_async(_main)
    text = json.dumps(api, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output} ({len(api)} nodes)", err=True)


@app.command("validate")
def validate(
    ctx: typer.Context,
    workflow: Path = WORKFLOW_ARG,
    object_info: Path | None = OBJECT_INFO,
    target: str | None = TARGET,
    as_json: bool = JSON_OUT,
    token: str | None = TOKEN,
) -> None:
    """Validate a workflow offline, with ComfyUI's own error types and messages."""
    from comfyfleet.services.workflows import load_catalog, validate_workflow

    settings = global_options(ctx).settings()

    async def _main() -> list[str]:
        catalog = await load_catalog(settings, object_info=object_info, target=target, token=token)
        return validate_workflow(workflow, catalog)

    outputs = run_async(_main, as_json=as_json)
    if as_json:
        emit_json({"valid": True, "outputs": outputs})
    else:
        typer.echo(f"{workflow}: valid ({len(outputs)} output node(s): {', '.join(outputs)})")


@app.command("deps")
def deps(
    ctx: typer.Context,
    workflow: Path = WORKFLOW_ARG,
    object_info: Path | None = OBJECT_INFO,
    as_json: bool = JSON_OUT,
) -> None:
    """List what a workflow needs: node classes, model files per folder, input files."""
    from comfyfleet.services.workflows import load_object_info_file, workflow_deps

    async def _main() -> WorkflowDeps:
        catalog = load_object_info_file(object_info) if object_info else None
        return workflow_deps(workflow, catalog)

    result = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(result.to_json())
    else:
        from comfyfleet.cli.render import print_deps

        print_deps(result)
