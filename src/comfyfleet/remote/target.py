"""Where an instance's SSH server is and how we log in (`SshTarget`), and where our files live.

comfyfleet keeps its SSH files under `<config dir>/ssh/`:

    comfyfleet_ed25519, comfyfleet_ed25519.pub   the comfyfleet key (see `keys`)
    known_hosts.d/<instance>                     one known_hosts file per instance (pinned keys)
    config.d/<alias>.conf                        one generated ssh config file per instance

The layer above maps a Vast instance to an `SshTarget`; this package never asks Vast itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SSH_DIR = "ssh"
KNOWN_HOSTS_DIR = "known_hosts.d"
CONFIG_DIR = "config.d"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    """One instance's SSH endpoint and the files used to reach it.

    `key_path` None means: no key of ours, use the SSH agent (and the user's default keys).
    `instance_ref` names the instance in messages and files (a Vast id such as "31337").
    """

    host: str
    port: int
    user: str = "root"
    key_path: Path | None
    known_hosts_path: Path
    alias: str
    instance_ref: str

    @property
    def endpoint(self) -> str:
        """`[host]:port` as OpenSSH writes it in known_hosts (`host` alone for port 22)."""
        return endpoint_name(self.host, self.port)

    def describe(self) -> str:
        return f"instance {self.instance_ref} ({self.user}@{self.host}:{self.port})"


def endpoint_name(host: str, port: int) -> str:
    """The known_hosts host field of an endpoint: `host` for port 22, else `[host]:port`."""
    return host if port == 22 else f"[{host}]:{port}"


def ssh_dir(config_dir: Path) -> Path:
    """`<config dir>/ssh`: comfyfleet's key, known_hosts files and generated ssh config."""
    return config_dir / SSH_DIR


def safe_file_name(name: str) -> str:
    """`name` reduced to characters every file system accepts (others become `_`)."""
    cleaned = _UNSAFE.sub("_", name).strip("._")
    return cleaned or "_"


def known_hosts_file(config_dir: Path, instance_ref: str) -> Path:
    """The per-instance known_hosts file: `<config dir>/ssh/known_hosts.d/<instance>`."""
    return ssh_dir(config_dir) / KNOWN_HOSTS_DIR / safe_file_name(instance_ref)


def config_include_dir(config_dir: Path) -> Path:
    """The folder of generated per-instance ssh config files (`Include`d from ~/.ssh/config)."""
    return ssh_dir(config_dir) / CONFIG_DIR
