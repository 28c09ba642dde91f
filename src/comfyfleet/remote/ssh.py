"""SSH connections to instances (asyncssh), with pinned host keys and keepalive.

    async with connect(target, clock=clock) as conn:     # or: conn = await connect(...)
        completed = await run(conn, RemoteCommand.of("nvidia-smi", "-L"))

Host keys follow `hostkeys.HostKeyPolicy` (pinned on first contact, never unchecked). The
user's `~/.ssh/config` and `~/.ssh/known_hosts` are NOT read: an instance is reached with
exactly the target's key, user and per-instance known_hosts file. Every asyncssh or OS error
leaves this module as an `errors.RemoteError` (see `translate`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from types import TracebackType
from typing import Any

import asyncssh

from comfyfleet.errors import (
    RemoteError,
    RemoteTimeout,
    SshAuthFailed,
    SshUnreachable,
)
from comfyfleet.remote.banner import banner_check
from comfyfleet.remote.hostkeys import HostKeyPolicy
from comfyfleet.remote.keys import private_key
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import Clock
from comfyfleet.util.resource import AsyncResource

DEFAULT_CONNECT_TIMEOUT = 20.0
__all__ = ["SshConnection", "banner_check", "connect", "translate"]


class SshConnection(AsyncResource):
    """An open SSH connection to one instance; close it with `aclose()` or `async with`."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, target: SshTarget, connected_at: float
    ) -> None:
        self._conn = conn
        self.target = target
        self.connected_at = connected_at  # the clock's now() when the login completed

    @property
    def asyncssh_connection(self) -> asyncssh.SSHClientConnection:
        """The underlying asyncssh connection (for this package's modules)."""
        return self._conn

    @property
    def host_key_fingerprint(self) -> str:
        key = self._conn.get_server_host_key()
        return str(key.get_fingerprint("sha256")) if key is not None else ""

    def is_closed(self) -> bool:
        return bool(self._conn.is_closed())

    async def wait_closed(self) -> None:
        """Return when the connection is gone (closed by us, the server, or a failed keepalive)."""
        await self._conn.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once, without a goodbye."""
        self._conn.abort()

    async def aclose(self) -> None:
        self._conn.close()
        with contextlib.suppress(asyncssh.Error, OSError):
            await self._conn.wait_closed()


class _Client(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy) -> None:
        self._policy = policy

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # asyncssh asks only about keys outside the trusted set given to it.
        return self._policy.decide(key)


class _Connecting:
    """What `connect` returns: await it for a connection, or use it with `async with`."""

    def __init__(self, target: SshTarget, options: dict[str, Any], clock: Clock) -> None:
        self._target = target
        self._options = options
        self._clock = clock
        self._conn: SshConnection | None = None

    def __await__(self) -> Generator[Any, None, SshConnection]:
        return self._open().__await__()

    async def _open(self) -> SshConnection:
        target = self._target
        policy = HostKeyPolicy(target)
        options = dict(self._options)
        if target.key_path is not None:  # exactly this key; SshKeyError if it is unusable
            options["client_keys"] = [private_key(target.key_path)]
            options["agent_path"] = None
        algs = policy.host_key_algs()
        if algs:
            options["server_host_key_algs"] = algs
        try:
            conn = await asyncssh.connect(
                target.host,
                target.port,
                client_factory=lambda: _Client(policy),
                known_hosts=(policy.trusted(), [], []),
                **options,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            if policy.refused is not None:
                raise policy.changed_error() from exc
            raise translate(exc, target, "connect") from exc
        except (asyncssh.Error, OSError) as exc:
            raise translate(exc, target, "connect") from exc
        try:
            policy.after_connect(conn.get_server_host_key())
        except BaseException:
            conn.abort()
            raise
        return SshConnection(conn, target, self._clock.now())

    async def __aenter__(self) -> SshConnection:
        self._conn = await self._open()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            await self._conn.aclose()


# AES-GCM first: `cryptography` runs it on the CPU's AES instructions, which makes a tunnel
# ~1.4x faster than with chacha20-poly1305 (asyncssh's first choice; bench/tunnel_throughput).
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


def connect(
    target: SshTarget,
    *,
    clock: Clock,
    keepalive: float = 30.0,
    keepalive_count: int = 3,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> _Connecting:
    """Open an SSH connection to `target` (await it, or `async with` it).

    Keepalive: a request every `keepalive` seconds without traffic; after `keepalive_count`
    unanswered ones the connection is dropped (and `wait_closed` returns). Raises
    SshUnreachable (retryable), SshAuthFailed, HostKeyChanged or RemoteError.
    """
    options: dict[str, Any] = {
        "username": target.user,
        "config": None,  # the user's ~/.ssh/config is for OpenSSH; we use the target only
        "keepalive_interval": keepalive,
        "keepalive_count_max": keepalive_count,
        "connect_timeout": connect_timeout,
        "login_timeout": connect_timeout,
        "preferred_auth": "publickey",
        "encryption_algs": list(CIPHERS),
    }
    return _Connecting(target, options, clock)


def translate(exc: BaseException, target: SshTarget, action: str) -> RemoteError:
    """An asyncssh / OS exception as the RemoteError the layers above understand."""
    what = f"{action} to {target.describe()}"
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, asyncssh.PermissionDenied):
        key = f"{target.key_path}.pub" if target.key_path else "your ssh-agent's keys"
        return SshAuthFailed(
            f"{what}: the instance refused our key",
            hint=f"make sure {key} is registered with your Vast account and attached to "
            "the instance (keys reach a starting instance after a short while)",
        )
    if isinstance(exc, asyncssh.TimeoutError):
        return RemoteTimeout(f"{what}: timed out")
    if isinstance(exc, TimeoutError):
        return SshUnreachable(f"{what}: timed out", hint="the instance may still be starting")
    if isinstance(exc, asyncssh.ConnectionLost | asyncssh.DisconnectError | OSError):
        reason = getattr(exc, "reason", "") or getattr(exc, "strerror", "") or str(exc)
        return SshUnreachable(
            f"{what}: {reason or type(exc).__name__}",
            hint="the instance may be starting, stopped, or its SSH port changed; retry",
        )
    if isinstance(exc, asyncssh.ChannelOpenError):
        return RemoteError(f"{what}: the server refused the channel ({exc.reason})")
    return RemoteError(f"{what}: {exc}")
