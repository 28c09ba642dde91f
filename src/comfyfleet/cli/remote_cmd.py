"""`comfyfleet ssh|exec|gpu|disk|ps|logs|restart|pip|connect` and `ssh-config sync`."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from comfyfleet.cli.common import emit_json
from comfyfleet.cli.instances_cmd import JSON_OUT, REF, with_cloud

if TYPE_CHECKING:
    from collections.abc import Callable

    from comfyfleet.services.cloud import Cloud

ssh_config_app = typer.Typer(help="Generated ~/.ssh/config entries for your instances.")
ARGS = typer.Argument(None, help="After --: the command and its arguments.")


def register(app: typer.Typer) -> None:
    # Commands taking a remote command line: options stop at the instance, the rest is argv.
    trailing = {"allow_interspersed_args": False}
    commands: list[tuple[str, Callable[..., None], dict[str, Any] | None]] = [
        ("ssh", ssh, trailing),
        ("exec", exec_, trailing),
        ("pip", pip, trailing),
        ("gpu", gpu, None),
        ("disk", disk, None),
        ("ps", ps, None),
        ("logs", logs, None),
        ("restart", restart, None),
        ("connect", connect, None),
    ]
    for name, fn, settings in commands:
        app.command(name, context_settings=settings)(fn)
    app.add_typer(ssh_config_app, name="ssh-config")


def _argv(words: list[str] | None) -> list[str]:
    """The words after `--` (the separator itself is not part of the command)."""
    words = list(words or [])
    return words[1:] if words[:1] == ["--"] else words


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def ssh(ctx: typer.Context, ref: str = REF, command: list[str] = ARGS) -> None:
    """Open a shell on the instance (or run COMMAND), with OpenSSH when installed."""
    import subprocess

    from comfyfleet.remote.interactive import find_ssh, interactive_shell, openssh_command
    from comfyfleet.services.remote_ops import (
        ensure_account_key,
        live_instance,
        require_running,
        target_for,
    )

    async def body(cloud: Cloud) -> Any:
        row, inst = await live_instance(cloud, ref)
        require_running(row, inst)
        key = await ensure_account_key(cloud)
        target = target_for(cloud, row, inst, key)
        words = _argv(command)
        remote = " ".join(words) if words else None
        binary = find_ssh()
        if binary is None:
            return await interactive_shell(target, clock=cloud.clock, command=remote)
        return openssh_command(target, None, remote, tty=remote is None, ssh=binary)

    result = with_cloud(ctx, body, False)
    if isinstance(result, list):
        raise typer.Exit(subprocess.call(result))
    raise typer.Exit(int(result))


def exec_(ctx: typer.Context, ref: str = REF, command: list[str] = ARGS) -> None:
    """Run COMMAND on the instance, stream its output, exit with its exit code."""
    from comfyfleet.services.instance_ops import exec_command

    words = _argv(command)
    if not words:
        raise typer.BadParameter("give the command after --", param_hint="COMMAND")
    # Like ssh: the words form one shell command line on the instance.
    line = " ".join(words)
    code = with_cloud(ctx, lambda cloud: exec_command(cloud, ref, line, _out, _err), False)
    raise typer.Exit(int(code))


def gpu(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """GPUs of the instance: utilization, memory, temperature, processes (nvidia-smi)."""
    from comfyfleet.cli.render_remote import print_gpus
    from comfyfleet.services.instance_ops import gpu as get

    gpus = with_cloud(ctx, lambda cloud: get(cloud, ref), as_json)
    if as_json:
        emit_json([asdict(g) for g in gpus])
    else:
        print_gpus(gpus)


def disk(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """Disk usage of the instance (root, workspace, models)."""
    from comfyfleet.cli.render_remote import print_disk
    from comfyfleet.services.instance_ops import disk as get

    usage = with_cloud(ctx, lambda cloud: get(cloud, ref), as_json)
    if as_json:
        emit_json({path: asdict(u) if u else None for path, u in usage.items()})
    else:
        print_disk(usage)


def ps(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """Processes on the instance; ComfyUI's are marked."""
    from comfyfleet.cli.render_remote import print_ps
    from comfyfleet.services.instance_ops import ps as get

    procs = with_cloud(ctx, lambda cloud: get(cloud, ref), as_json)
    if as_json:
        emit_json([asdict(p) for p in procs])
    else:
        print_ps(procs)


def logs(
    ctx: typer.Context,
    ref: str = REF,
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    lines: int = typer.Option(100, "-n", "--lines", help="How many lines to show first."),
) -> None:
    """ComfyUI's log on the instance."""
    from comfyfleet.services.instance_ops import logs as get

    def line(text: str) -> None:
        _out(text if text.endswith("\n") else text + "\n")

    code = with_cloud(
        ctx, lambda cloud: get(cloud, ref, lines=lines, follow=follow, on_line=line), False
    )
    raise typer.Exit(int(code))


def restart(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """Restart ComfyUI on the instance; returns when it answers again."""
    from comfyfleet.services.instance_ops import restart as do

    done = with_cloud(ctx, lambda cloud: do(cloud, ref), as_json)
    if as_json:
        emit_json({"restarted": True, "seconds": round(done.seconds, 2)})
    else:
        typer.echo(f"ComfyUI answers again ({done.seconds:.1f} s)")


def pip(ctx: typer.Context, ref: str = REF, args: list[str] = ARGS) -> None:
    """Run the instance venv's pip (never a global one): comfyfleet pip ID -- list."""
    from comfyfleet.services.instance_ops import pip as run_pip

    words = _argv(args)
    if not words:
        raise typer.BadParameter("give pip's arguments after --", param_hint="ARGS")
    code = with_cloud(ctx, lambda cloud: run_pip(cloud, ref, words, _line, _err_line), False)
    raise typer.Exit(int(code))


def _line(text: str) -> None:
    _out(text if text.endswith("\n") else text + "\n")


def _err_line(text: str) -> None:
    _err(text if text.endswith("\n") else text + "\n")


@ssh_config_app.command("sync")
def ssh_config_sync(ctx: typer.Context, as_json: bool = JSON_OUT) -> None:
    """Write one ssh config file per running instance, prune the rest, ensure the Include."""
    from comfyfleet.services.instance_ops import ssh_config_sync as do

    result = with_cloud(ctx, do, as_json)
    data = {
        "written": [str(p) for p in result.written],
        "removed": [str(p) for p in result.removed],
        "include": None if result.include is None else asdict(result.include),
    }
    if as_json:
        emit_json(data)
        return
    for path in result.written:
        typer.echo(f"wrote {path}")
    for path in result.removed:
        typer.echo(f"removed {path}")
    if result.include is not None and result.include.changed:
        typer.echo(f"added an Include line to {result.include.path}")


@ssh_config_app.command("forget")
def ssh_config_forget(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OUT) -> None:
    """Forget the host key pinned for an instance (after Vast re-created its machine)."""
    from comfyfleet.services.instance_ops import forget_host_key

    removed = with_cloud(ctx, lambda cloud: forget_host_key(cloud, ref), as_json)
    if as_json:
        emit_json({"removed": removed})
    else:
        typer.echo(f"forgot {removed} pinned host key(s) of {ref}; the next connection pins anew")


def connect(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Instances (default: every running one)."),
    port: int | None = typer.Option(None, "--port", help="First local port (default: free)."),
    remote_port: int | None = typer.Option(
        None, "--remote-port", help="ComfyUI's port on the instance (default: detected)."
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
) -> None:
    """Forward local ports to instances' ComfyUI; reconnects by itself; Ctrl+C closes."""
    from comfyfleet.cli.connect_view import run_connect

    run_connect(ctx, refs or [], port=port, remote_port=remote_port, browser=not no_browser)
