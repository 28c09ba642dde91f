"""A host's filesystem, laid out like Vast's ComfyUI image inside one folder, and its env.

    <root>/workspace/ComfyUI/{models/…,custom_nodes,input,output,user/default/workflows}
    <root>/venv/main/                  the ComfyUI venv (what ComfyUI runs with)
    <root>/usr/bin/python3, pip        the "system" Python, a different environment
    <root>/usr/local/bin/              shims first on PATH: nvidia-smi, supervisorctl
    <root>/var/log/portal/comfyui.log  ComfyUI's output (renamed *.log.old on every start)
    <root>/etc/environment, portal.yaml, pip.conf, ssh/ssh_host_ed25519_key
    <root>/root/                       root's home (.bashrc activates the venv, as Vast's does)
    <root>/.provisioning               present while provisioning; .provisioning_complete after

Everything an image path would be (`/workspace`, `/venv/main`) is announced through the same
environment variables Vast's image sets, with this folder's absolute paths as values.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from comfyfleet.sandbox.host.spec import HostSpec

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Ports:
    """The host's loopback ports: SSH, the token proxy (container 8188), ComfyUI (18188)."""

    ssh: int
    proxy: int
    comfy: int


class HostLayout:
    """Paths of one host root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.workspace = self.root / "workspace"
        self.comfy_dir = self.workspace / "ComfyUI"
        self.venv = self.root / "venv" / "main"
        self.system_prefix = self.root / "usr"
        self.shim_dir = self.root / "usr" / "local" / "bin"
        self.log_dir = self.root / "var" / "log" / "portal"
        self.comfy_log = self.log_dir / "comfyui.log"
        self.provisioning_log = self.log_dir / "provisioning.log"
        self.etc = self.root / "etc"
        self.home = self.root / "root"
        self.host_key = self.etc / "ssh" / "ssh_host_ed25519_key"
        self.provisioning_marker = self.root / ".provisioning"
        self.provisioned_marker = self.root / ".provisioning_complete"
        self.host_log = self.root / "var" / "log" / "sandbox-host.log"

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def system_python(self) -> Path:
        return self.system_prefix / "bin" / "python3"

    @property
    def path_value(self) -> str:
        """PATH in the instance: shims first, then the system Python, then the real system."""
        return f"{self.shim_dir}:{self.system_prefix / 'bin'}:{SYSTEM_PATH}"

    def make_dirs(self) -> None:
        for path in (
            self.workspace,
            self.comfy_dir,
            self.shim_dir,
            self.log_dir,
            self.etc / "ssh",
            self.home,
            self.root / "tmp",
        ):
            path.mkdir(parents=True, exist_ok=True)

    # --- environment -----------------------------------------------------------------------

    def environment(
        self, spec: HostSpec, ports: Ports, wheelhouse: Path, nvidia_name: str
    ) -> dict[str, str]:
        """The environment every process of the instance sees (image < user env < platform)."""
        env: dict[str, str] = {
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
            "OPEN_BUTTON_PORT": "1111",
            "JUPYTER_DIR": "/",
            "PORTAL_CONFIG": f"localhost:{ports.proxy}:{ports.comfy}:/:ComfyUI",
            "COMFYUI_ARGS": "--disable-auto-launch --enable-cors-header --port 18188",
        }
        env.update({k: v for k, v in spec.env.items() if _NAME.match(k)})
        env.update(
            {
                "PATH": self.path_value,
                "HOME": str(self.home),
                "USER": "root",
                "LOGNAME": "root",
                "WORKSPACE": str(self.workspace),
                "DATA_DIRECTORY": f"{self.workspace}/",
                "COMFYUI_ARGS": with_port(env["COMFYUI_ARGS"], ports.comfy),
                "COMFYUI_API_BASE": f"http://localhost:{ports.comfy}",
                "OPEN_BUTTON_TOKEN": spec.web_token,
                "WEB_PASSWORD": web_password(spec),
                "CONTAINER_ID": str(spec.instance_id),
                "VAST_CONTAINERLABEL": container_label(spec.instance_id),
                "PUBLIC_IPADDR": "127.0.0.1",
                "VAST_TCP_PORT_22": str(ports.ssh),
                "VAST_TCP_PORT_8188": str(ports.proxy),
                "GPU_COUNT": str(spec.num_gpus),
                "NVIDIA_VISIBLE_DEVICES": "all",
                "SANDBOX_GPU_NAME": nvidia_name,
                "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": str(wheelhouse),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PIP_ROOT_USER_ACTION": "ignore",
                "PIP_CONFIG_FILE": str(self.etc / "pip.conf"),
            }
        )
        return env

    def write_environment(self, env: Mapping[str, str]) -> None:
        """`/etc/environment`: one `KEY="value"` a line, as Vast's images export the env."""
        lines = [f'{k}="{_dq(v)}"' for k, v in sorted(env.items())]
        (self.etc / "environment").write_text("\n".join(lines) + "\n")

    def write_portal_yaml(self, ports: Ports) -> None:
        (self.etc / "portal.yaml").write_text(
            "applications:\n"
            "  ComfyUI:\n"
            "    hostname: localhost\n"
            f"    external_port: {ports.proxy}\n"
            f"    internal_port: {ports.comfy}\n"
            "    open_path: /\n"
            "    name: ComfyUI\n"
        )

    def write_pip_conf(self, wheelhouse: Path) -> None:
        """pip.conf for both Pythons: never an index, always the wheelhouse."""
        text = (
            "[global]\nno-index = true\n"
            f"find-links = {wheelhouse}\ndisable-pip-version-check = true\n"
        )
        for path in (
            self.etc / "pip.conf",
            self.venv / "pip.conf",
            self.system_prefix / "pip.conf",
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def write_bashrc(self) -> None:
        """root's .bashrc: interactive shells get the ComfyUI venv, as on Vast's image.

        bash also reads it for commands run over SSH; like Ubuntu's, it returns at once when
        the shell is not interactive, so `ssh host pip …` finds the system pip, not the venv's.
        """
        (self.home / ".bashrc").write_text(
            "case $- in *i*) ;; *) return ;; esac\n"
            "# Interactive shells start in the workspace with the ComfyUI venv active.\n"
            f". {shlex.quote(str(self.venv / 'bin' / 'activate'))}\n"
            'cd "$WORKSPACE" 2>/dev/null || true\n'
            "PS1='root@C.$CONTAINER_ID:\\w# '\n"
        )

    def workspace_env(self) -> dict[str, str]:
        """`${WORKSPACE}/.env`: KEY=VALUE lines services read at start (Vast's persistent env)."""
        path = self.workspace / ".env"
        out: dict[str, str] = {}
        if not path.is_file():
            return out
        for raw in path.read_text(errors="replace").splitlines():
            line = raw.strip()
            if line.startswith("export "):
                line = line[len("export ") :]
            key, sep, value = line.partition("=")
            if sep and _NAME.match(key.strip()):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                out[key.strip()] = value
        return out


def with_port(args: str, port: int) -> str:
    """COMFYUI_ARGS with its `--port` set to this host's internal port (added if missing)."""
    out: list[str] = []
    skip = False
    for word in shlex.split(args):
        if skip:
            skip = False
        elif word == "--port":
            skip = True
        elif not word.startswith("--port="):
            out.append(word)
    return shlex.join([*out, "--port", str(port)])


def web_password(spec: HostSpec) -> str:
    """`WEB_PASSWORD`: the one the instance env sets (the documented way), else the token."""
    return spec.env.get("WEB_PASSWORD") or spec.web_token


def container_label(instance_id: int) -> str:
    """Vast's container label, `C.<id>` (the proxy's cookie is `<label>_auth_token`)."""
    return f"C.{instance_id}"


def _dq(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
