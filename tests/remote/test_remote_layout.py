"""Layout detection: Vast's image on a sandbox host, plain installs on a real sshd, the rules."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import pytest
from tests.remote.opensshd import OpenSshd
from tests.remote.plainkit import make_plain_comfy
from tests.sandbox_host.hostkit import RunningHost

from comfyfleet.errors import LayoutNotDetected
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.layout import (
    SUPERVISOR_RESTART,
    Facts,
    LayoutOverrides,
    decide,
    detect_layout,
    parse_facts,
)
from comfyfleet.remote.scripts import PROBE, probe_command
from comfyfleet.remote.ssh import connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

CLOCK = SystemClock()
P = PurePosixPath


async def test_vast_image_layout_on_a_sandbox_host(
    sandbox: RunningHost, sandbox_target: SshTarget
) -> None:
    async with connect(sandbox_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn)
    root = P(sandbox.root)
    assert layout.comfy_dir == root / "workspace/ComfyUI"
    assert layout.comfy_port == sandbox.process.comfy_port  # COMFYUI_ARGS --port, not 8188
    assert layout.venv == root / "venv/main"
    assert layout.python == root / "venv/main/bin/python"
    assert layout.pip == (str(root / "venv/main/bin/python"), "-m", "pip")
    assert layout.log_file == root / "var/log/portal/comfyui.log"
    assert layout.restart_command == SUPERVISOR_RESTART
    assert layout.workspace == root / "workspace"
    assert layout.image_kind == "vast"


async def test_plain_layout_found_from_workspace_on_a_real_sshd(
    sshd: OpenSshd, sshd_target: SshTarget
) -> None:
    comfy = make_plain_comfy(Path(sshd.env["WORKSPACE"]) / "ComfyUI")
    async with connect(sshd_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn)
    assert layout.comfy_dir == P(comfy)
    assert (layout.comfy_port, layout.image_kind) == (8188, "generic")
    assert layout.venv == P(comfy / "venv")
    assert layout.log_file == P(comfy / "comfyui.log")  # where the fallback restart writes
    assert layout.restart_command is not None and "main.py" in layout.restart_command
    assert not layout.restarts_with_supervisor
    assert layout.workspace == P(sshd.env["WORKSPACE"])


async def test_overrides_win_and_the_rest_is_detected_around_them(
    sshd: OpenSshd, sshd_target: SshTarget, tmp_path: Path
) -> None:
    comfy = make_plain_comfy(tmp_path / "opt dir" / "ComfyUI", venv=".venv")
    overrides = LayoutOverrides(comfy_dir=P(comfy), comfy_port=9999)
    async with connect(sshd_target, clock=CLOCK) as conn:
        layout = await detect_layout(conn, overrides)
        forced = await detect_layout(
            conn, LayoutOverrides(comfy_dir=P(comfy), venv=P("/elsewhere"), restart_command="x")
        )
    assert (layout.comfy_dir, layout.comfy_port) == (P(comfy), 9999)
    assert layout.venv == P(comfy / ".venv")
    assert "9999" in (layout.restart_command or "")
    assert (forced.venv, forced.restart_command) == (P("/elsewhere"), "x")


async def test_image_environment_file_is_read_without_its_secrets(
    sshd: OpenSshd, sshd_target: SshTarget, tmp_path: Path
) -> None:
    # A non-interactive session without the image's env: /etc/environment has it.
    workspace = tmp_path / "ws" / "workspace"
    make_plain_comfy(workspace / "ComfyUI")
    envfile = tmp_path / "environment"
    envfile.write_text(
        f'WORKSPACE="{workspace}"\n'
        'COMFYUI_ARGS="--disable-auto-launch --enable-cors-header --port 18188"\n'
        'OPEN_BUTTON_TOKEN="tok-very-secret"\nCONTAINER_API_KEY=key-very-secret\n'
    )
    cmd = probe_command(None, None, P(envfile))
    async with connect(sshd_target, clock=CLOCK) as conn:
        done = await run(conn, RemoteCommand.of("env", "-u", "WORKSPACE", *cmd.argv))
    assert done.exit_code == 0, done.stderr
    assert "very-secret" not in done.stdout
    facts = parse_facts(done.stdout)
    assert "WORKSPACE" not in facts.env and facts.etc_env["WORKSPACE"] == str(workspace)
    layout = decide(facts)
    assert layout.comfy_dir == P(workspace / "ComfyUI")
    assert (layout.comfy_port, layout.image_kind) == (18188, "vast")


def test_probe_survives_odd_values_in_a_local_sh() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "WORKSPACE": "/tmp/a\nb'c\"d $(x)/workspace",
        "COMFYUI_ARGS": "--port=12345 --listen",
    }
    out = subprocess.run(
        ["sh", "-c", PROBE, "probe", "", "", "/nonexistent/environment"],
        env=env,
        capture_output=True,
        check=True,
    ).stdout.decode()
    facts = parse_facts(out)
    assert facts.env["WORKSPACE"] == env["WORKSPACE"]
    assert facts.image_root == "/tmp/a\nb'c\"d $(x)"
    assert env["WORKSPACE"] + "/ComfyUI" in facts.checked


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "env": {},
        "etc_env": {},
        "home": "/root",
        "image_root": None,
        "comfy": ["/workspace/ComfyUI"],
        "checked": ["/workspace/ComfyUI"],
        "venvs": [],
        "files": [],
        "portal": False,
        "supervisor_status": None,
        "supervisor_output": "",
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "portal", "port", "kind"),
    [
        ({"COMFYUI_ARGS": "--disable-auto-launch --port 18188"}, False, 18188, "vast"),
        ({"COMFYUI_ARGS": "--port=7000"}, False, 7000, "vast"),
        ({"COMFYUI_ARGS": "--listen"}, False, 18188, "vast"),
        ({"PORTAL_CONFIG": "localhost:1111:11111:/:Portal|localhost:8188:18190:/:ComfyUI"},
         False, 18190, "vast"),
        ({"COMFYUI_API_BASE": "http://localhost:18200"}, True, 18200, "vast"),
        ({}, True, 18188, "vast"),
        ({}, False, 8188, "generic"),
    ],
)  # fmt: skip
def test_comfy_port_and_image_kind(env: dict[str, str], portal: bool, port: int, kind: str) -> None:
    layout = decide(facts(env=env, portal=portal))
    assert (layout.comfy_port, layout.image_kind) == (port, kind)


def test_venv_and_restart_rules() -> None:
    comfy = "/workspace/ComfyUI"
    picked = decide(facts(venvs=["/opt/conda", "/venv/main", f"{comfy}/venv"]))
    assert picked.venv == P(f"{comfy}/venv")  # the checkout's own venv first
    vast = decide(facts(venvs=["/opt/conda", "/venv/main"], supervisor_status=0))
    assert (vast.venv, vast.restart_command) == (P("/venv/main"), SUPERVISOR_RESTART)
    unknown = decide(facts(venvs=["/venv/main"], supervisor_status=4,
                           supervisor_output="comfyui: ERROR (no such process)"))  # fmt: skip
    assert unknown.restart_command is not None and "main.py" in unknown.restart_command
    bare = decide(facts())
    assert (bare.venv, bare.python, bare.pip, bare.restart_command) == (None, None, (), None)


def test_no_comfy_folder_says_where_it_looked() -> None:
    with pytest.raises(LayoutNotDetected) as caught:
        decide(facts(comfy=[], checked=["/workspace/ComfyUI", "/opt/ComfyUI"]))
    assert "/workspace/ComfyUI, /opt/ComfyUI" in str(caught.value)
    assert "--comfy-dir" in str(caught.value)
