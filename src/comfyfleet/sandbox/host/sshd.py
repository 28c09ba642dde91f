"""The host's SSH server (asyncssh) and its knobs: drop connections, refuse, move, new key.

User `root`, public-key auth only, against the authorized_keys file re-read on every attempt
(the simulated cloud rewrites it when keys are registered or attached). Sessions run in bash
(see `session`); direct-tcpip forwarding reaches loopback ports (the internal ComfyUI port);
remote forwarding may listen on loopback; SFTP and scp work on the host's files. The host key
is generated once per root and kept, so clients can pin it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import asyncssh

from comfyfleet.sandbox.host.session import ProcessGroups, run_session, session_env
from comfyfleet.util.clock import Clock

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "ip6-localhost"})
log = logging.getLogger(__name__)
logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO


def load_host_key(path: Path, *, rotate: bool = False) -> asyncssh.SSHKey:
    """The host key kept at `path` (generated when missing, or when `rotate` asks for a new one)."""
    if path.exists() and not rotate:
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="root@sandbox-host")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    key.write_private_key(str(tmp))
    tmp.chmod(0o600)
    tmp.replace(path)
    key.write_public_key(str(path) + ".pub")
    return key


def read_authorized_keys(path: Path) -> asyncssh.SSHAuthorizedKeys:
    """Parse an authorized_keys file as sshd does: unreadable or bad lines are skipped."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return asyncssh.SSHAuthorizedKeys()
    good: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            asyncssh.import_authorized_keys(line)
        except (ValueError, asyncssh.KeyImportError):
            continue
        good.append(line)
    return (
        asyncssh.import_authorized_keys("\n".join(good) + "\n")
        if good
        else asyncssh.SSHAuthorizedKeys()
    )


class SshService:
    """One host's SSH listener, its live connections and the knobs that disturb them."""

    def __init__(
        self,
        host_key_path: Path,
        authorized_keys_file: Path,
        env: Callable[[], dict[str, str]],
        cwd: Path,
        rcfile: Path,
        home: Path,
        clock: Clock,
        on_change: Callable[[], None],
    ) -> None:
        self.host_key_path = host_key_path
        self.authorized_keys_file = authorized_keys_file
        self.env = env
        self.cwd = cwd
        self.rcfile = rcfile
        self.home = home
        self.clock = clock
        self.on_change = on_change  # port or host key changed: rewrite the endpoints
        self.port = 0
        self.groups = ProcessGroups()
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._key = load_host_key(host_key_path)
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._refusal: asyncio.Task[None] | None = None

    @property
    def fingerprint(self) -> str:
        return str(self._key.get_fingerprint("sha256"))

    @property
    def listening(self) -> bool:
        return self._acceptor is not None

    # --- listening ---------------------------------------------------------------------------

    async def start(self, port: int = 0) -> int:
        self._acceptor = await asyncssh.listen(
            "127.0.0.1",
            port,
            server_factory=lambda: _Server(self),
            server_host_keys=[self._key],
            process_factory=self._session,
            sftp_factory=lambda chan: _Sftp(chan, self.home),
            allow_scp=True,
            encoding=None,
            agent_forwarding=False,
            x11_forwarding=False,
            reuse_address=True,
            login_timeout=30,
        )
        self.port = self._acceptor.get_port()
        return self.port

    async def _stop_listening(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    async def close(self) -> None:
        if self._refusal is not None:
            self._refusal.cancel()
        await self._stop_listening()
        self.drop_all()
        self.groups.kill_all()

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        env = session_env(self.env(), process)
        await run_session(process, env, str(self.cwd), str(self.rcfile), self.groups)

    # --- knobs -------------------------------------------------------------------------------

    def drop_all(self, port: int | None = None) -> int:
        """Cut every SSH connection (to `port` only, if given) now, as a network drop would."""
        conns = [
            conn
            for conn in self.connections
            if port is None or (conn.get_extra_info("sockname") or ("", 0))[1] == port
        ]
        for conn in conns:
            conn.abort()
            self.connections.discard(conn)
        return len(conns)

    async def refuse(self, seconds: float) -> None:
        """Stop listening for `seconds` (simulated) — new connections are refused — then resume."""
        if self._refusal is not None:
            self._refusal.cancel()
        await self._stop_listening()
        self._refusal = asyncio.create_task(self._resume_after(seconds))

    async def _resume_after(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        try:
            await self.start(self.port)
        except OSError:  # someone took the port meanwhile: the endpoint changes
            await self.start(0)
            self.on_change()
        self._refusal = None

    async def move(self) -> int:
        """Restart SSH on a new port (its connections drop): the endpoint changed."""
        if self._refusal is not None:
            self._refusal.cancel()
            self._refusal = None
        old_port, old_acceptor = self.port, self._acceptor
        port = await self.start(0)  # while the old one still listens: surely another port
        if old_acceptor is not None:
            old_acceptor.close()
            await old_acceptor.wait_closed()
        self.drop_all(port=old_port)
        self.on_change()
        return port

    async def rotate_host_key(self) -> str:
        """A new host key (pinned clients must refuse it), same port, connections dropped."""
        self._key = load_host_key(self.host_key_path, rotate=True)
        if self._acceptor is not None:
            await self._stop_listening()
            self.drop_all()
            await self.start(self.port)
        self.on_change()
        return self.fingerprint


class _Server(asyncssh.SSHServer):
    def __init__(self, service: SshService) -> None:
        self.service = service
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.service.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.service.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        assert self.conn is not None
        keys = (
            read_authorized_keys(self.service.authorized_keys_file)
            if username == "root"
            else asyncssh.SSHAuthorizedKeys()
        )
        self.conn.set_authorized_keys(keys)
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        if dest_host.lower() in LOOPBACK:
            return True
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            "the sandbox forwards to loopback addresses only",
        )

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return listen_host.lower() in LOOPBACK


class _Sftp(asyncssh.SFTPServer):
    """SFTP on the host's files; relative paths start in root's home, as with OpenSSH."""

    def __init__(self, chan: asyncssh.SSHServerChannel, home: Path) -> None:
        super().__init__(chan)
        self._home = bytes(home)

    def exit(self) -> None:
        # OpenSSH's scp and sftp read the session's exit status, as sftp-server sends it.
        with contextlib.suppress(OSError, asyncssh.Error):
            self.channel.exit(0)

    def map_path(self, path: bytes) -> bytes:
        if not path.startswith(b"/"):
            path = self._home + (b"/" + path if path and path != b"." else b"")
        return path
