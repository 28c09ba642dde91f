"""A real OpenSSH server for tests: Debian's sshd on a free loopback port, everything in temp.

    server = OpenSshd(base_dir, authorized_keys=b"ssh-ed25519 …", env={"WORKSPACE": "/tmp/…"})
    server.start()        # waits for the banner; server.port, server.user
    server.rekey()        # new host keys, same port (a re-created instance)
    server.stop()

Host keys (ed25519 and ECDSA, so key-type negotiation matters), authorized_keys, pid file and
config live in `base_dir`. sshd runs in the foreground (-D) as a child of the test process.
It needs /usr/sbin/sshd; when run as root also /run/sshd (privilege separation), created here.
`require_sshd()` skips the calling test without it, or fails it when CI=true.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


def require_sshd() -> None:
    """Skip (or, under CI=true, fail) when no OpenSSH server is installed."""
    if SSHD.exists() and shutil.which("ssh-keygen") and shutil.which("ssh"):
        return
    message = "OpenSSH server not installed (apt-get install openssh-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OpenSshd:
    def __init__(
        self, base: Path, authorized_keys: bytes, env: dict[str, str] | None = None
    ) -> None:
        self.base = base
        self.user = getpass.getuser()
        self.port = 0
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)
        self.authorized_keys = base / "authorized_keys"
        self.authorized_keys.write_bytes(authorized_keys)
        self.log = base / "sshd.log"
        self._make_host_keys()

    def _make_host_keys(self) -> None:
        for kind in ("ed25519", "ecdsa"):
            path = self.base / f"ssh_host_{kind}_key"
            for old in (path, path.with_name(path.name + ".pub")):
                old.unlink(missing_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)],
                check=True,
                capture_output=True,
            )

    def host_public_key(self, kind: str = "ed25519") -> str:
        """`keytype base64` of one host key."""
        return " ".join((self.base / f"ssh_host_{kind}_key.pub").read_text().split()[:2])

    def _config(self) -> Path:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.base / 'ssh_host_ed25519_key'}",
            f"HostKey {self.base / 'ssh_host_ecdsa_key'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.base / 'sshd.pid'}",
            f"AllowUsers {self.user}",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        if self.env:
            lines.append("SetEnv " + " ".join(f'"{k}={v}"' for k, v in self.env.items()))
        path = self.base / "sshd_config"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, port: int | None = None) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for _ in range(5):
            self.port = port or free_port()
            config = self._config()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [str(SSHD), "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_banner(10.0):
                return
            self.stop()
            if port:
                break
        raise RuntimeError(f"sshd did not start:\n{self.log.read_text()[-3000:]}")

    def _wait_banner(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                if sock.recv(64).startswith(b"SSH-2.0-"):
                    return True
            time.sleep(0.05)
        return False

    def children(self) -> list[int]:
        """The per-connection sshd processes this server forked (one per open connection)."""
        if self.proc is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.append(int(stat.parent.name))
        return found

    def drop_connections(self) -> int:
        """Cut every open connection (what a reboot of the instance does to its clients)."""
        pids = self.children()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return len(pids)

    def stop(self) -> None:
        """Stop listening and cut every connection."""
        self.drop_connections()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def rekey(self) -> None:
        """New host keys on the same port: what a re-created instance (or an attacker) shows."""
        self.stop()
        self._make_host_keys()
        self.start(self.port)
