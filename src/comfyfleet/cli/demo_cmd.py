"""`comfyfleet demo`: the whole story on the built-in sandbox, no account needed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.services.demo import DemoReport


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: ./outputs)."),
    speed: float = typer.Option(120.0, "--speed", help="Sandbox clock speed (x real time)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Rent a simulated GPU, run two workflows on it, show the bill, destroy it, verify."""
    import tempfile

    from comfyfleet.cli.render import RunView
    from comfyfleet.cli.render_cloud import StatusLines
    from comfyfleet.sandbox.vast.server import SandboxVast
    from comfyfleet.services.cloud import CloudConfig
    from comfyfleet.services.demo import run_demo

    if speed <= 0:
        raise typer.BadParameter("must be positive", param_hint="--speed")
    settings = global_options(ctx).settings(run__out_dir=out)
    say = StatusLines(enabled=not as_json)

    async def _main() -> DemoReport:
        with tempfile.TemporaryDirectory(prefix="comfyfleet-demo-") as tmp:
            state = Path(tmp)
            say(f"starting the sandbox cloud (simulated Vast.ai, {speed:g}x real time)")
            async with SandboxVast(state / "cloud", speed=speed, hosts=True) as cloud:
                config = CloudConfig(
                    "sandbox", cloud.url, cloud.api_key, cloud.clock, state / "data", settings
                )
                with RunView(enabled=not as_json) as view:
                    return await run_demo(config, settings.run.out_dir, view.update, say)

    report = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(report.to_json())
        return
    _print(report)


def _print(report: DemoReport) -> None:
    from comfyfleet.cli.console import stdout_console
    from comfyfleet.cli.render import print_run_report

    out = stdout_console()
    print_run_report(report.txt2img)
    print_run_report(report.filters)
    bill = report.bill
    out.print(
        f"bill: instance {report.instance_id} ({report.gpu}, ${report.dph_total:.3f}/h) ran "
        f"{bill.estimate.running_seconds / 60:.1f} simulated minutes; estimated "
        f"${bill.estimate.total_usd:.4f}, the account was charged ${bill.charged:.4f}",
        markup=False,
    )
    verdict = "nothing is left billing" if not report.left_billing else "STILL BILLING"
    out.print(
        f"after destroy: {report.left_billing} instance(s) left, "
        f"${report.idle_charge:.6f} charged while watching: {verdict}",
        markup=False,
    )
