"""`comfyfleet sandbox ...`: the built-in simulated world."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="The built-in sandbox: a simulated Vast cloud and ComfyUI (no account, no money)."
)


_ROOT_OPTION = typer.Option(
    None, "--root", help="ComfyUI folder (models/, input/, output/, user/); default: a temp dir."
)


@app.command("comfy")
def comfy(
    port: int = typer.Option(8188, "--port", help="Port on 127.0.0.1 (0 picks a free one)."),
    root: Path | None = _ROOT_OPTION,
    speed: float = typer.Option(1.0, "--speed", help="Simulated seconds per real second."),
) -> None:
    """Serve one standalone sandbox ComfyUI on 127.0.0.1 until Ctrl+C."""
    import asyncio
    import tempfile

    from comfyfleet.cli.common import EXIT_INTERRUPTED
    from comfyfleet.sandbox.comfy.server import serve

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    base = root or Path(tempfile.mkdtemp(prefix="comfyfleet-sandbox-"))
    typer.echo(f"sandbox ComfyUI root: {base}", err=True)
    try:
        asyncio.run(serve(base, "127.0.0.1", port, speed))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
