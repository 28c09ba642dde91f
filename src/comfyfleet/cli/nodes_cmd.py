"""`comfyfleet nodes install|update|ls|rm`: custom node packs on an instance, torch-safe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import emit_json, progress_line
from comfyfleet.cli.instances_cmd import JSON_OUT, REF, with_cloud

if TYPE_CHECKING:
    from comfyfleet.services.cloud import Cloud
    from comfyfleet.services.nodes import InstallResult
    from comfyfleet.services.nodes_manage import Listing

app = typer.Typer(
    help="Custom node packs on an instance: install and update (never touching torch), list, "
    "remove.",
    no_args_is_help=True,
)


@app.command("install")
def install(
    ctx: typer.Context,
    ref: str = REF,
    source: str = typer.Argument(
        ..., help="A pack id (ComfyUI-Manager / Comfy Registry), GitHub owner/repo, or git URL."
    ),
    git_ref: str | None = typer.Option(
        None, "--ref", help="Tag, branch or commit to install (default: the default branch)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Install a node pack: clone, requirements (torch never changes), restart, verify."""
    from comfyfleet.services.nodes import install_pack

    async def body(cloud: Cloud) -> Any:
        return await install_pack(cloud, ref, source, git_ref=git_ref, on_line=progress_line)

    _print_install(with_cloud(ctx, body, as_json), as_json)


def _print_install(result: InstallResult, as_json: bool) -> None:
    from comfyfleet.services.nodes import node_classes

    if as_json:
        emit_json(result.to_json())
        return
    if result.status == "already-installed":
        typer.echo(f"{result.pack} is already installed at {result.commit}")
        return
    verb = "updated" if result.status == "updated" else "installed"
    typer.echo(f"{verb} {result.pack} at {result.commit} on {result.instance}")
    if result.requirements:
        typer.echo("requirements: " + " ".join(result.requirements))
    shown = ", ".join(result.classes[:12]) + (" …" if len(result.classes) > 12 else "")
    typer.echo(node_classes(len(result.classes)) + (f": {shown}" if shown else ""))
    for note in result.notes:
        typer.echo(f"note: {note}")


@app.command("update")
def update(
    ctx: typer.Context,
    ref: str = REF,
    pack: str = typer.Argument(..., help="The pack's name as `nodes ls` shows it (or its URL)."),
    git_ref: str | None = typer.Option(
        None, "--ref", help="Tag, branch or commit (default: the latest of its default branch)."
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Update an installed pack from its own repository (requirements guarded, restart, verify)."""
    from comfyfleet.services.nodes_manage import update_pack

    async def body(cloud: Cloud) -> Any:
        return await update_pack(cloud, ref, pack, git_ref=git_ref, on_line=progress_line)

    _print_install(with_cloud(ctx, body, as_json), as_json)


@app.command("ls")
def ls(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """Every pack in the instance's custom_nodes: origin, commit, changes, import state."""
    from comfyfleet.services.nodes_manage import list_packs

    listing = with_cloud(ctx, lambda cloud: list_packs(cloud, ref), as_json)
    if as_json:
        emit_json(listing.to_json())
    else:
        _print_listing(listing)


@app.command("rm")
def rm(
    ctx: typer.Context,
    ref: str = REF,
    pack: str = typer.Argument(..., help="The pack's name as `nodes ls` shows it (or its URL)."),
    as_json: bool = JSON_OUT,
) -> None:
    """Remove a pack from custom_nodes, restart ComfyUI, check its nodes are gone."""
    from comfyfleet.services.nodes_manage import remove_pack

    removed = with_cloud(
        ctx, lambda cloud: remove_pack(cloud, ref, pack, on_line=progress_line), as_json
    )
    if as_json:
        emit_json(removed.to_json())
        return
    typer.echo(f"removed {removed.pack} from {removed.instance}")
    for note in removed.notes:
        typer.echo(f"note: {note}")


def _print_listing(listing: Listing) -> None:
    from rich.table import Table

    from comfyfleet.cli.console import stdout_console

    def yes_no(value: bool | None, yes: str, no: str) -> str:
        return "?" if value is None else yes if value else no

    table = Table(header_style="bold")
    for col in ("pack", "origin", "commit", "changes", "imported", "classes"):
        table.add_column(col)
    for p in listing.packs:
        e = p.entry
        name = e.name + (f" -> {e.link}" if e.link else "")
        if e.disabled:
            imported = "disabled"
        elif not e.loadable:
            imported = "not a pack"
        else:
            imported = yes_no(p.imported, "yes", "IMPORT FAILED")
        table.add_row(
            name,
            e.url or ("-" if e.kind == "file" else "(not git)"),
            (e.commit or "-")[:12],
            "-" if e.dirty is None else yes_no(e.dirty, "modified", "clean"),
            imported,
            "?" if p.classes is None else str(p.classes),
        )
    out = stdout_console()
    out.print(table if listing.packs else f"{listing.folder} is empty", markup=False)
    if not listing.comfy_answered:
        out.print("ComfyUI did not answer: class counts are unknown", markup=False)
    if not listing.log_read:
        out.print("ComfyUI's log has no import report: import states are unknown", markup=False)
