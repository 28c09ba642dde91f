"""The `comfyfleet` command: global options and the command tree.

Command modules import only typer at module level; everything heavy is imported when a
command runs, so `comfyfleet --help` stays fast.
"""

from __future__ import annotations

import typer

from comfyfleet import __version__
from comfyfleet.cli import (
    backup_cmd,
    demo_cmd,
    doctor_cmd,
    env_cmd,
    instances_cmd,
    models_cmd,
    nodes_cmd,
    prepare_cmd,
    queue_cmd,
    remote_cmd,
    run_cmd,
    sandbox_cmd,
    workflow_cmd,
)
from comfyfleet.cli.common import GlobalOptions

app = typer.Typer(
    name="comfyfleet",
    help="Rent Vast.ai GPUs and run ComfyUI workflows on them. "
    "Try it without an account: comfyfleet demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"comfyfleet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    profile: str | None = typer.Option(
        None,
        "--profile",
        envvar="COMFYFLEET_PROFILE",
        help="'default' (real Vast.ai) or 'sandbox' (the local sandbox).",
    ),
    config: str | None = typer.Option(
        None, "--config", envvar="COMFYFLEET_CONFIG", help="Config file (TOML)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = GlobalOptions(profile=profile, config=config)


app.add_typer(workflow_cmd.app, name="workflow")
app.add_typer(sandbox_cmd.app, name="sandbox")
app.add_typer(models_cmd.app, name="models")
app.add_typer(nodes_cmd.app, name="nodes")
app.add_typer(env_cmd.app, name="env")
run_cmd.register(app)
instances_cmd.register(app)
remote_cmd.register(app)
demo_cmd.register(app)
backup_cmd.register(app)
doctor_cmd.register(app)
queue_cmd.register(app)
prepare_cmd.register(app)

#: `--help` groups commands by what they are for.
PANELS = {
    "Workflows": ("run", "workflow", "prepare", "demo"),
    "Renting": ("login", "offers", "up", "ls", "show", "stop", "start", "destroy", "rename"),
    "On an instance": (
        "connect",
        "ssh",
        "exec",
        "gpu",
        "disk",
        "ps",
        "logs",
        "restart",
        "pip",
        "nodes",
        "models",
        "env",
        "doctor",
        "queue",
        "ssh-config",
    ),
    "Backups": ("backup", "restore", "workflows"),
    "Sandbox": ("sandbox",),
}
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
for _command in app.registered_commands:
    _command.rich_help_panel = _PANEL_OF.get(_command.name or "", _command.rich_help_panel)
for _group in app.registered_groups:
    _group.rich_help_panel = _PANEL_OF.get(_group.name or "", _group.rich_help_panel)


def main() -> None:
    """Console-script entry point."""
    app()
