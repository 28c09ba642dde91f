"""`comfyfleet models pull|ls|rm`: model files on an instance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import emit_json
from comfyfleet.cli.instances_cmd import JSON_OUT, REF, with_cloud

if TYPE_CHECKING:
    from comfyfleet.services.cloud import Cloud

app = typer.Typer(
    help="Model files on an instance: downloaded there (Hugging Face, Civitai, any URL), "
    "sha256-checked and recorded.",
    no_args_is_help=True,
)


@app.command("pull")
def pull(
    ctx: typer.Context,
    ref: str = REF,
    source: str = typer.Argument(
        ...,
        help="hf://OWNER/REPO[@REV]/PATH, a huggingface.co URL, civitai:MODEL[@VERSION], "
        "a civitai.com URL, or an http(s) URL.",
    ),
    folder: str | None = typer.Option(
        None, "--folder", help="Model folder (loras, checkpoints, vae, clip, unet...)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="File name in the folder (SUBFOLDER/NAME allowed)."
    ),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected sha256 of the file."),
    as_json: bool = JSON_OUT,
) -> None:
    """Download a model file on the instance into its folder (resumable, verified, once)."""
    from comfyfleet.cli.render_models import PullView, print_pulled
    from comfyfleet.services.models import plan_pull
    from comfyfleet.services.models import pull as do_pull

    view = PullView()  # progress on stderr, with --json too

    async def body(cloud: Cloud) -> Any:
        planned = await plan_pull(cloud.settings, source, folder=folder, name=name, sha256=sha256)
        view.planned(planned)
        try:
            return await do_pull(cloud, ref, planned, on_progress=view)
        finally:
            view.close()

    result = with_cloud(ctx, body, as_json)
    if as_json:
        emit_json(result.to_json())
    else:
        print_pulled(result)


@app.command("ls")
def ls(
    ctx: typer.Context,
    ref: str = REF,
    folder: str | None = typer.Option(None, "--folder", help="Only this model folder."),
    as_json: bool = JSON_OUT,
) -> None:
    """Model files on the instance, per folder, with sha256 and source when recorded."""
    from comfyfleet.cli.render_models import print_models
    from comfyfleet.services.models import list_models

    files = with_cloud(ctx, lambda cloud: list_models(cloud, ref, folder), as_json)
    if as_json:
        emit_json([f.to_json() for f in files])
    else:
        print_models(files)


@app.command("rm")
def rm(
    ctx: typer.Context,
    ref: str = REF,
    path: str = typer.Argument(..., help="FOLDER/NAME, e.g. loras/detail.safetensors."),
    as_json: bool = JSON_OUT,
) -> None:
    """Delete a model file from the instance (and its record)."""
    from comfyfleet.services.models import remove_model

    removed = with_cloud(ctx, lambda cloud: remove_model(cloud, ref, path), as_json)
    if as_json:
        emit_json(
            {"removed": f"models/{removed.path}", "size": removed.size, "file": removed.had_file}
        )
    elif removed.had_file:
        typer.echo(f"removed models/{removed.path}")
    else:
        typer.echo(f"removed the partial download of models/{removed.path}")
