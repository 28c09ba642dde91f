"""Where ComfyUI lives on an instance: detected over SSH in one round trip, overridable.

Detection order (the user's overrides always win):

1. The image's environment (the session's, then /etc/environment, which non-interactive SSH
   sessions may not have loaded). Vast's ComfyUI image sets WORKSPACE, DATA_DIRECTORY and
   COMFYUI_ARGS (`--port 18188`: ComfyUI listens on 127.0.0.1:18188, Caddy publishes 8188).
   Its other paths (`/venv/main`, `/var/log/portal/comfyui.log`) are taken relative to the
   folder holding `workspace`, which is `/` on Vast and a temporary folder on sandbox hosts.
2. Known places of other common images: `/workspace/ComfyUI`, `/opt/ComfyUI`, `/ComfyUI`,
   `~/ComfyUI`; venvs `<comfy>/venv`, `<comfy>/.venv`, `/venv/main`, `$VIRTUAL_ENV`,
   `/opt/conda`. ComfyUI's port is then its default, 8188.
3. Restart: `supervisorctl restart comfyui` when supervisor knows a `comfyui` program, else a
   fallback that stops the folder's `main.py` and starts it again with the venv's python
   (output appended to the log file, `<comfy>/comfyui.log` unless one was found).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from comfyfleet.errors import LayoutNotDetected
from comfyfleet.remote.commands import run
from comfyfleet.remote.scripts import fallback_restart, probe_command
from comfyfleet.remote.ssh import SshConnection

ImageKind = Literal["vast", "generic"]
VAST_COMFY_PORT = 18188  # Vast's image: ComfyUI itself (8188 is the token-checking proxy)
COMFY_DEFAULT_PORT = 8188
SUPERVISOR_RESTART = "supervisorctl restart comfyui"
_PORTAL_ENTRY = re.compile(r"^[^:|]*:(\d+):(\d+):[^:|]*:ComfyUI$")


@dataclass(frozen=True)
class InstanceLayout:
    """Where ComfyUI, its venv, log and restart command are on one instance."""

    comfy_dir: PurePosixPath
    comfy_port: int  # where ComfyUI itself listens on the instance's loopback
    venv: PurePosixPath | None  # None: no venv found (pip then refuses to run)
    python: PurePosixPath | None  # the venv's python
    pip: tuple[str, ...]  # argv prefix: "<venv>/bin/python -m pip"; empty without a venv
    log_file: PurePosixPath | None
    restart_command: str | None  # a shell command line, values quoted; None: no way known
    workspace: PurePosixPath
    image_kind: ImageKind

    @property
    def restarts_with_supervisor(self) -> bool:
        return self.restart_command == SUPERVISOR_RESTART


@dataclass(frozen=True)
class LayoutOverrides:
    """What the user says; every field given wins over detection."""

    comfy_dir: PurePosixPath | None = None
    comfy_port: int | None = None
    venv: PurePosixPath | None = None
    log_file: PurePosixPath | None = None
    restart_command: str | None = None
    workspace: PurePosixPath | None = None


@dataclass(frozen=True)
class Facts:
    """What the probe saw, in the order it looked."""

    env: Mapping[str, str]  # the session's environment (probed keys only)
    etc_env: Mapping[str, str]  # /etc/environment (probed keys only, quotes removed)
    home: str
    image_root: str | None
    comfy: Sequence[str]  # folders that look like a ComfyUI checkout
    checked: Sequence[str]  # every folder looked at
    venvs: Sequence[str]  # folders with an executable bin/python
    files: Sequence[str]  # log files that exist
    portal: bool  # /etc/portal.yaml (Vast's Instance Portal) exists
    supervisor_status: int | None  # exit code of `supervisorctl status comfyui`; None: no tool
    supervisor_output: str

    def value(self, key: str) -> str | None:
        return self.env.get(key) or self.etc_env.get(key) or None


def parse_facts(output: str) -> Facts:
    """The probe's NUL-terminated `name=value` records as Facts."""
    env: dict[str, str] = {}
    etc: dict[str, str] = {}
    lists: dict[str, list[str]] = {"comfy": [], "checked": [], "venv": [], "file": []}
    single: dict[str, str] = {}
    for record in output.split("\0"):
        name, sep, value = record.lstrip("\n").partition("=")
        if not sep:
            continue
        if name.startswith("env."):
            env[name[4:]] = value
        elif name.startswith("etc."):
            etc[name[4:]] = _unquote(value)
        elif name in lists:
            if value not in lists[name]:
                lists[name].append(value)
        else:
            single[name] = value
    status = single.get("supervisor.status")
    return Facts(
        env=env,
        etc_env=etc,
        home=single.get("home", ""),
        image_root=single.get("image_root"),
        comfy=lists["comfy"],
        checked=lists["checked"],
        venvs=lists["venv"],
        files=lists["file"],
        portal=single.get("portal") == "yes",
        supervisor_status=int(status) if status and status.isdigit() else None,
        supervisor_output=single.get("supervisor.output", ""),
    )


def _unquote(value: str) -> str:
    """A pam_env / shell style value: surrounding quotes removed, \\" and \\\\ undone."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = re.sub(r"\\([\"\\])", r"\1", value[1:-1])
    return value


def comfy_port_from(facts: Facts, vast: bool) -> int:
    """`--port` in COMFYUI_ARGS, else the portal's ComfyUI entry, else COMFYUI_API_BASE."""
    args = facts.value("COMFYUI_ARGS")
    if args:
        try:
            words = shlex.split(args)
        except ValueError:
            words = args.split()
        for i, word in enumerate(words):
            if word == "--port" and i + 1 < len(words) and words[i + 1].isdigit():
                return int(words[i + 1])
            if word.startswith("--port=") and word[7:].isdigit():
                return int(word[7:])
    for entry in (facts.value("PORTAL_CONFIG") or "").split("|"):
        match = _PORTAL_ENTRY.match(entry.strip())
        if match:
            return int(match.group(2))
    base = re.search(r":(\d+)/?$", facts.value("COMFYUI_API_BASE") or "")
    if base:
        return int(base.group(1))
    return VAST_COMFY_PORT if vast else COMFY_DEFAULT_PORT


def decide(facts: Facts, overrides: LayoutOverrides | None = None) -> InstanceLayout:
    """The layout the facts point to; LayoutNotDetected when no ComfyUI folder is known."""
    o = overrides or LayoutOverrides()
    vast = bool(facts.value("COMFYUI_ARGS") or facts.value("PORTAL_CONFIG") or facts.portal)
    comfy = o.comfy_dir or (PurePosixPath(facts.comfy[0]) if facts.comfy else None)
    if comfy is None:
        looked = ", ".join(facts.checked) or "nothing"
        raise LayoutNotDetected(
            f"no ComfyUI folder found on the instance (looked at: {looked})",
            hint="give its folder with --comfy-dir (a checkout holding main.py)",
        )
    root = PurePosixPath(facts.image_root) if facts.image_root else PurePosixPath("/")
    active = facts.value("VIRTUAL_ENV")
    venv = o.venv or _first(
        facts.venvs,
        [
            comfy / "venv",
            comfy / ".venv",
            root / "venv" / "main",
            PurePosixPath("/venv/main"),
            *([PurePosixPath(active)] if active else []),
            PurePosixPath("/opt/conda"),
        ],
    )
    python = venv / "bin" / "python" if venv else None
    port = o.comfy_port or comfy_port_from(facts, vast)
    supervised = (
        facts.supervisor_status in (0, 3) and "no such process" not in facts.supervisor_output
    )
    log = o.log_file or _first(
        facts.files,
        [
            root / "var/log/portal/comfyui.log",
            PurePosixPath("/var/log/portal/comfyui.log"),
            comfy / "comfyui.log",
            comfy / "user" / "comfyui.log",
        ],
    )
    restart = o.restart_command
    if restart is None and supervised:
        restart = SUPERVISOR_RESTART
    if restart is None and python is not None:
        log = log or comfy / "comfyui.log"
        restart = fallback_restart(comfy, python, log, ["--port", str(port)])
    workspace = o.workspace or _workspace(facts, comfy)
    return InstanceLayout(
        comfy_dir=comfy,
        comfy_port=port,
        venv=venv,
        python=python,
        pip=(str(python), "-m", "pip") if python else (),
        log_file=log,
        restart_command=restart,
        workspace=workspace,
        image_kind="vast" if vast else "generic",
    )


def _first(found: Sequence[str], preference: Sequence[PurePosixPath]) -> PurePosixPath | None:
    present = {PurePosixPath(f) for f in found}
    for path in preference:
        if path in present:
            return path
    return None


def _workspace(facts: Facts, comfy: PurePosixPath) -> PurePosixPath:
    value = facts.value("WORKSPACE") or facts.value("DATA_DIRECTORY")
    return PurePosixPath(value) if value else comfy.parent


async def detect_layout(
    conn: SshConnection, overrides: LayoutOverrides | None = None
) -> InstanceLayout:
    """Probe the instance once over `conn` and decide its layout (see module doc)."""
    o = overrides or LayoutOverrides()
    done = await run(conn, probe_command(o.comfy_dir, o.venv))
    if done.exit_code != 0:
        raise LayoutNotDetected(
            f"the layout probe failed on {conn.target.describe()} (exit {done.exit_code}): "
            f"{done.stderr[-500:].strip()}",
            hint="the instance needs a POSIX sh; give the layout with --comfy-dir and --venv",
        )
    return decide(parse_facts(done.stdout), o)
