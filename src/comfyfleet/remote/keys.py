"""The SSH key comfyfleet logs in with: its own ed25519 key, or one the user chose.

The comfyfleet key is generated on first use at `<config dir>/ssh/comfyfleet_ed25519` (+ `.pub`).
The private key file is created with mode 0600 from the start (never written first and
tightened later), in a directory created 0700; two processes generating at once end up with
the same key (the first link wins). A user's key is checked the way OpenSSH checks it: it must
exist, not be readable by others (POSIX), parse, and carry no passphrase (comfyfleet never asks
for one: such keys belong in ssh-agent).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from comfyfleet.errors import SshKeyError
from comfyfleet.remote.target import ssh_dir

KEY_NAME = "comfyfleet_ed25519"


@dataclass(frozen=True)
class KeyPair:
    """A usable private key file and its public half (OpenSSH one-line format)."""

    private_path: Path
    public_text: str  # "ssh-ed25519 AAAA… comment"
    fingerprint: str  # "SHA256:…"

    def public_key_text(self) -> str:
        """The public key line to register with Vast (`ssh-ed25519 AAAA… comment`)."""
        return self.public_text


def default_key_path(config_dir: Path) -> Path:
    return ssh_dir(config_dir) / KEY_NAME


def ensure_key(config_dir: Path) -> KeyPair:
    """The comfyfleet key, generated on first use; SshKeyError if the existing one is unusable."""
    path = default_key_path(config_dir)
    if not path.exists():
        _generate(path)
    return load_key(path)


def load_key(path: Path) -> KeyPair:
    """Check and load a private key file (the comfyfleet key or the user's choice)."""
    key = private_key(path)
    public = key.export_public_key("openssh").decode().strip()
    if len(public.split()) < 3 and key.get_comment():
        public = f"{public} {key.get_comment()}"
    return KeyPair(path.expanduser(), public, str(key.get_fingerprint("sha256")))


def private_key(path: Path) -> asyncssh.SSHKey:
    """The private key at `path`, checked as OpenSSH checks it; SshKeyError says what is wrong."""
    path = path.expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SshKeyError(
            f"SSH key {path} does not exist",
            hint="give the path of a private key file, or leave the key unset to use comfyfleet's",
        ) from None
    except OSError as exc:
        raise SshKeyError(f"cannot read SSH key {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise SshKeyError(f"SSH key {path} is not a file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise SshKeyError(
            f"SSH key {path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"OpenSSH refuses such keys too: chmod 600 '{path}'",
        )
    try:
        return asyncssh.read_private_key(str(path))
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        if _needs_passphrase(exc):
            raise SshKeyError(
                f"SSH key {path} is protected by a passphrase",
                hint="load it into ssh-agent (ssh-add) and leave the key unset, "
                "or use a key without a passphrase (such as comfyfleet's own)",
            ) from exc
        raise SshKeyError(f"{path} is not a usable private key: {exc}") from exc
    except OSError as exc:
        raise SshKeyError(f"cannot read SSH key {path}: {exc.strerror or exc}") from exc


def _needs_passphrase(exc: Exception) -> bool:
    text = str(exc).lower()
    return "passphrase" in text or "encrypted" in text


def _generate(path: Path) -> None:
    """Write a new ed25519 key at `path`, 0600 from creation; keep a concurrent winner's key."""
    folder = path.parent
    _make_private_dir(folder)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=_comment())
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)  # 0600
    tmp = Path(name)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key("openssh"))
    try:
        os.link(tmp, path)  # fails if another process got there first: its key wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    pub = path.with_name(path.name + ".pub")
    if not pub.exists():
        with contextlib.suppress(FileExistsError):
            public = asyncssh.read_private_key(str(path)).export_public_key("openssh")
            _write_new(pub, public, 0o644)


def _make_private_dir(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _comment() -> str:
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"comfyfleet@{host}"
