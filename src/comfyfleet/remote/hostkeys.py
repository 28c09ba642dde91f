"""Per-instance known_hosts files: host keys pinned on first contact, in OpenSSH's format.

Policy (never "accept anything"):

- The file holds the keys of ONE instance, one `[host]:port keytype base64` line per endpoint
  (`host keytype base64` for port 22), so OpenSSH's `UserKnownHostsFile` reads it unchanged.
- First contact (the file has no key at all): the offered key is accepted and pinned.
- The endpoint is pinned: the offered key must be the pinned one, else `HostKeyChanged`.
- The endpoint is new but the instance has pinned keys (Vast moved its SSH port): the offered
  key must be one of the instance's keys; it is then pinned for the new endpoint as well. An
  unknown key at a new endpoint is `HostKeyChanged` too: it is the same instance.

`forget` removes pins (the fix a `HostKeyChanged` message points to).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from comfyfleet.errors import HostKeyChanged, RemoteError
from comfyfleet.remote.target import SshTarget, endpoint_name


@dataclass(frozen=True)
class Pin:
    """One known_hosts line we understand: the host field and its key."""

    hosts: tuple[str, ...]  # the comma-separated host patterns of the line
    key: asyncssh.SSHKey

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))


def read_pins(path: Path) -> list[Pin]:
    """The keys in a known_hosts file; lines we do not understand (markers, hashes) are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RemoteError(f"cannot read known_hosts file {path}: {exc.strerror or exc}") from exc
    pins: list[Pin] = []
    for raw in text.splitlines():
        fields = raw.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@", "|")):
            continue
        try:
            key = asyncssh.import_public_key(f"{fields[1]} {fields[2]}")
        except (asyncssh.KeyImportError, ValueError):
            continue
        pins.append(Pin(tuple(fields[0].split(",")), key))
    return pins


def keys_for(pins: Sequence[Pin], host: str, port: int) -> list[asyncssh.SSHKey]:
    name = endpoint_name(host, port)
    return [pin.key for pin in pins if name in pin.hosts]


def pin_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """One known_hosts line in OpenSSH's format."""
    data = key.export_public_key("openssh").decode().split()
    return f"{endpoint_name(host, port)} {data[0]} {data[1]}\n"


def add_pin(path: Path, host: str, port: int, key: asyncssh.SSHKey) -> None:
    """Append `key` for host:port unless that exact pin is there; file 0600, dir created 0700."""
    if key in keys_for(read_pins(path), host, port):
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = pin_line(host, port, key).encode()
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600
        )
        with os.fdopen(fd, "ab") as fh:
            if fh.tell() > 0 and not _ends_with_newline(path):
                fh.write(b"\n")
            fh.write(line)  # one write: concurrent writers do not interleave lines
    except OSError as exc:
        raise RemoteError(f"cannot write known_hosts file {path}: {exc.strerror or exc}") from exc


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def forget(path: Path, host: str | None = None, port: int | None = None) -> int:
    """Remove the pins of one endpoint (or the whole file when no endpoint is given).

    Returns how many lines were removed. Use it after an instance was legitimately re-created.
    """
    if host is None or port is None:
        count = len(read_pins(path))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return count
    name = endpoint_name(host, port)
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    kept = [line for line in lines if name not in (line.split() or [""])[0].split(",")]
    if len(kept) != len(lines):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(kept)
        os.replace(tmp, path)
    return len(lines) - len(kept)


class HostKeyPolicy:
    """Decides on the key an instance offers, for one connection attempt (see module doc)."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.pins = read_pins(target.known_hosts_path)
        self.endpoint_keys = keys_for(self.pins, target.host, target.port)
        self.refused: asyncssh.SSHKey | None = None

    def trusted(self) -> list[asyncssh.SSHKey]:
        """Keys the server may present: this endpoint's pins, else the instance's pins."""
        return self.endpoint_keys or list(dict.fromkeys(pin.key for pin in self.pins))

    def host_key_algs(self) -> list[str] | None:
        """Ask for the pinned key's type, so the server shows the key we pinned (None: any)."""
        trusted = self.trusted()
        if not trusted:
            return None
        return list(dict.fromkeys(alg.decode() for key in trusted for alg in key.sig_algorithms))

    def decide(self, key: asyncssh.SSHKey) -> bool:
        """Called for a key not in `trusted()`: pin it on first contact, else refuse it."""
        if not self.pins:
            add_pin(self.target.known_hosts_path, self.target.host, self.target.port, key)
            return True
        self.refused = key
        return False

    def after_connect(self, key: asyncssh.SSHKey | None) -> None:
        """A trusted key of the instance answered on a new endpoint: pin it there too."""
        if key is not None and key not in self.endpoint_keys:
            add_pin(self.target.known_hosts_path, self.target.host, self.target.port, key)

    def changed_error(self) -> HostKeyChanged:
        target = self.target
        offered = str(self.refused.get_fingerprint("sha256")) if self.refused else "unknown"
        pinned = [str(k.get_fingerprint("sha256")) for k in self.trusted()]
        where = "its pinned key" if self.endpoint_keys else "the key pinned at another endpoint"
        return HostKeyChanged(
            f"host key of {target.describe()} changed: it offered {offered}, "
            f"{where} is {', '.join(pinned)}",
            instance_ref=target.instance_ref,
            endpoint=target.endpoint,
            pinned=pinned,
            offered=offered,
            known_hosts_file=str(target.known_hosts_path),
            hint=(
                "if the instance was re-created or its SSH server re-keyed, run "
                f"`comfyfleet ssh-config forget {target.instance_ref}` (or delete the line for "
                f"{target.endpoint} in {target.known_hosts_path}); otherwise do not connect: "
                "someone may be intercepting the connection"
            ),
        )
