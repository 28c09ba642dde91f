"""`comfyfleet doctor ID [--fix] [--json]`: check an instance's ComfyUI and fix what is safe."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from comfyfleet.cli.common import emit_json, global_options, run_async

if TYPE_CHECKING:
    from comfyfleet.services.doctor import DoctorReport

TARGET = typer.Argument(..., help="Instance (Vast id or name), or a ComfyUI URL (HTTP checks).")
TOKEN = typer.Option(None, "--token", envvar="COMFYFLEET_COMFY__TOKEN", hidden=True)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    target: str = TARGET,
    fix: bool = typer.Option(
        False, "--fix", help="Apply the safe fixes (never touches torch), then check again."
    ),
    stuck_after: float = typer.Option(
        10.0, "--stuck-after", help="Minutes without progress before a queue counts as stuck."
    ),
    watch: float = typer.Option(20.0, "--watch", help="Seconds the queue is watched."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    token: str | None = TOKEN,
) -> None:
    """Check an instance's health and, with --fix, mend what is safe to mend.

    ComfyUI, its venv (global-pip packages, pip check), torch/CUDA/driver, accelerators,
    failed custom nodes, disk/memory/GPU headroom and a stuck queue. Exits 1 while a check
    fails."""
    from rich.text import Text

    from comfyfleet.cli.cloud import cloud_opener
    from comfyfleet.cli.common import fail
    from comfyfleet.cli.console import stderr_console
    from comfyfleet.errors import UsageError
    from comfyfleet.services.doctor import DoctorOptions
    from comfyfleet.services.doctor import doctor as run_doctor

    if stuck_after <= 0 or watch <= 0:
        fail(
            UsageError(
                "--stuck-after and --watch must be positive",
                hint="e.g. --stuck-after 10 (minutes) --watch 20 (seconds)",
            ),
            as_json=as_json,
        )
    settings = global_options(ctx).settings()
    options = DoctorOptions(fix=fix, stuck_after=stuck_after * 60.0, watch=watch)
    err = stderr_console()

    async def _main() -> DoctorReport:
        return await run_doctor(
            target,
            settings,
            token=token,
            open_cloud=cloud_opener(ctx),
            options=options,
            progress=lambda text: err.print(Text(text, style="dim")),
        )

    report = run_async(_main, as_json=as_json)
    if as_json:
        emit_json(report.to_json())
    else:
        from comfyfleet.cli.render_doctor import print_doctor

        print_doctor(report)
    raise typer.Exit(1 if report.status.value == "fail" else 0)
