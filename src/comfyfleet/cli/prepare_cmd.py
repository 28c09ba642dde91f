"""`comfyfleet prepare WORKFLOW ID`: make an instance run a workflow, in one step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import emit_json, progress_line
from comfyfleet.cli.instances_cmd import JSON_OUT, REF, with_cloud

if TYPE_CHECKING:
    from comfyfleet.services.cloud import Cloud
    from comfyfleet.services.prepare import PrepareReport


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)


def prepare(
    ctx: typer.Context,
    workflow: Path = typer.Argument(..., help="Workflow file: UI format, API format or PNG."),
    ref: str = REF,
    pack: list[str] | None = typer.Option(
        None,
        "--pack",
        metavar="CLASS=PACK",
        help="The pack of a class several packs provide, or of one no catalog knows "
        "(a pack id, GitHub owner/repo or git URL); repeatable.",
    ),
    warm_up: bool = typer.Option(
        False, "--warm-up", help="Then run the workflow once (outputs discarded) and time it."
    ),
    warm_up_out: Path | None = typer.Option(
        None, "--warm-up-out", help="Keep the warm-up's outputs in this folder."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Make an instance ready for a workflow: its node packs, its models, one restart.

    Installs the node packs and pulls the model files a workflow needs, restarts ComfyUI
    once, and checks the instance accepts the workflow.

    Idempotent: run it again and nothing is installed, downloaded or restarted. Packs go
    through the torch guard (`nodes install`), files through `models pull`.

    Exit codes: 0 the workflow runs on the instance; 3 it does not (something could not be
    resolved: unknown or ambiguous classes, refused packs, files without a source); the
    warm-up's own code when it failed (4 execution failed, 6 timeout).
    """
    from comfyfleet.cli.render_models import PullView
    from comfyfleet.cli.render_prepare import print_prepare
    from comfyfleet.services.prepare import PrepareRequest
    from comfyfleet.services.prepare import prepare as do_prepare

    request = PrepareRequest(
        workflow,
        ref,
        tuple(pack or ()),
        warm_up=warm_up or warm_up_out is not None,
        warm_up_dir=warm_up_out,
    )
    view = PullView()  # progress on stderr, with --json too

    async def body(cloud: Cloud) -> Any:
        try:
            return await do_prepare(cloud, request, on_line=progress_line, on_progress=view)
        finally:
            view.close()

    report: PrepareReport = with_cloud(ctx, body, as_json)
    if as_json:
        emit_json(report.to_json())
    else:
        print_prepare(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
