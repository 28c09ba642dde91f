"""`comfyfleet run WORKFLOW --target URL`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.services.run import RunReport


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    ctx: typer.Context,
    workflow: Path = typer.Argument(..., help="Workflow file: UI format, API format or PNG."),
    target: str = typer.Option(
        ..., "--target", help="ComfyUI server URL, or an instance id or name."
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override an input: NODE.INPUT=VALUE (NODE: id, title or class)."
    ),
    inputs: list[str] = typer.Option(
        [], "--input", help="Upload a file into an input: NODE.image=path.png."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: ./outputs)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds before giving up."),
    token: str | None = typer.Option(
        None, "--token", envvar="COMFYFLEET_COMFY__TOKEN", help="Bearer token for the server."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Validate, upload inputs, run, and download every output into OUT/<job-id>/."""
    from comfyfleet.cli.cloud import cloud_opener
    from comfyfleet.cli.render import RunView
    from comfyfleet.services.run import RunRequest, run_workflow
    from comfyfleet.services.targets import resolve_target

    settings = global_options(ctx).settings(run__out_dir=out, run__timeout=timeout)

    async def _main() -> RunReport:
        endpoint = await resolve_target(target, settings, token=token, open_cloud=cloud_opener(ctx))
        request = RunRequest(
            workflow=workflow,
            target=endpoint,
            sets=sets,
            inputs=inputs,
            out_dir=settings.run.out_dir,
            timeout=settings.run.timeout,
        )
        with RunView(enabled=not as_json) as view:
            return await run_workflow(request, settings, progress=view.update)

    report = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(report.to_json())
    else:
        from comfyfleet.cli.render import print_run_report

        print_run_report(report)
