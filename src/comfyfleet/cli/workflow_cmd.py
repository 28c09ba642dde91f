"""`comfyfleet workflow convert|validate|deps`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.services.deps import WorkflowNeeds

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


DEPS_TARGET = typer.Option(
    None,
    "--target",
    help="A ComfyUI URL, or an instance id or name: report what it lacks of the workflow.",
)
PACK = typer.Option(
    None,
    "--pack",
    metavar="CLASS=PACK",
    help="Settle a class several node packs provide (a pack id or git URL); repeatable.",
)


@app.command("deps")
def deps(
    ctx: typer.Context,
    workflow: Path = WORKFLOW_ARG,
    target: str | None = DEPS_TARGET,
    object_info: Path | None = OBJECT_INFO,
    pack: list[str] | None = PACK,
    as_json: bool = JSON_OUT,
    token: str | None = TOKEN,
) -> None:
    """List what a workflow needs, and what a target lacks of it.

    Node classes with the packs that provide them, model files with where to download them,
    input files.

    With --target (or --object-info for node classes only), only what the server lacks is
    listed as missing, with the packs and sources that provide it, and the commands that
    install them. Catalogs: ComfyUI-Manager's lists (cached; shipped copies when offline),
    the Comfy Registry, Hugging Face, Civitai and your models manifest ([catalog] settings).

    Exit codes: 0 everything is there or can be fetched; 3 the target lacks a node class or
    model file that cannot be resolved (unknown, several packs and no --pack, no source).
    """
    from comfyfleet.cli.cloud import cloud_opener
    from comfyfleet.services.deps import parse_pack_choices, workflow_needs
    from comfyfleet.services.targets import resolve_target

    settings = global_options(ctx).settings()

    async def _main() -> WorkflowNeeds:
        if target is not None and object_info is not None:
            from comfyfleet.errors import UsageError

            raise UsageError(
                "give --target or --object-info, not both",
                hint="--target reads /object_info and the model folders from the server itself",
            )
        choices = parse_pack_choices(pack or [])
        endpoint = None
        if target is not None:
            endpoint = await resolve_target(
                target, settings, token=token, open_cloud=cloud_opener(ctx)
            )
        return await workflow_needs(
            workflow, target=endpoint, settings=settings, object_info=object_info, choices=choices
        )

    needs = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(needs.to_json())
    else:
        from comfyfleet.cli.render_deps import print_deps

        print_deps(needs)
    if needs.blocking:
        raise typer.Exit(3)
