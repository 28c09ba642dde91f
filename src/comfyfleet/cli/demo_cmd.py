"""`comfyfleet demo`: the whole story on the built-in sandbox, no account needed."""

from __future__ import annotations

from pathlib import Path

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: ./outputs)."),
    speed: float = typer.Option(20.0, "--speed", help="Sandbox clock speed (x real time)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Start a sandbox ComfyUI, run sample workflows on it and save their outputs."""
    import tempfile

    from comfyfleet.cli.render import RunView, print_run_report
    from comfyfleet.sandbox.comfy.server import SandboxComfy
    from comfyfleet.services.demo import DemoReport, run_demo
    from comfyfleet.services.targets import Target

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    settings = global_options(ctx).settings(run__out_dir=out)

    async def _main() -> DemoReport:
        with tempfile.TemporaryDirectory(prefix="comfyfleet-demo-") as root:
            async with SandboxComfy(root=Path(root), speed=speed) as server:
                with RunView(enabled=not as_json) as view:
                    view.update_text(f"sandbox ComfyUI at {server.url} (simulated GPU)")
                    return await run_demo(
                        Target(server.url), settings, settings.run.out_dir, view.update
                    )

    report = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(report.to_json())
        return
    print_run_report(report.txt2img)
    print_run_report(report.filters)
