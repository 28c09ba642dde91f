"""The one exception tree of comfyfleet.

Every error a user can see is one of these. Adapters translate foreign exceptions (httpx,
websockets, asyncssh, SQLAlchemy) into them at their boundary, so nothing above an adapter
catches a library's exception. Each error says what happened, to what, and what to do
(`hint`), and carries the process exit code the CLI uses.

    ComfyfleetError
    ├── UsageError                  bad input from the user (files, flags, values)
    │   ├── ConfigError             bad settings file / environment value
    │   └── UnsafeSource            a download URL or model file name unfit for a remote command
    ├── WorkflowError               a workflow that cannot be used as given
    │   ├── WorkflowFormatError     not a workflow, or a broken one
    │   ├── ConversionError         UI -> API conversion impossible
    │   ├── OverrideError           --set / --input names nothing, or too much
    │   └── WorkflowInvalid         validation failed (offline or by the server)
    │       └── PromptRejected      the server answered 400 to POST /prompt
    ├── ComfyError                  talking to a ComfyUI server
    │   ├── ComfyUnreachable        connection refused, reset, timed out (temporary)
    │   ├── ComfyAuthError          401/403 from the server or its proxy
    │   ├── ComfyProtocolError      an answer that does not follow ComfyUI's API
    │   ├── ComfyRequestRejected    a 4xx other than auth: refused path, conflict
    │   │   └── ComfyNotFound       404: no such file, folder or entry
    │   ├── PromptLost              a prompt left the queue without a result
    │   ├── ExecutionFailed         a node raised while running
    │   ├── ExecutionInterrupted    the prompt was interrupted
    │   ├── JobTimeout              no result before the deadline
    │   └── OutputError             an output could not be fetched or was unsafe
    ├── VastError                   talking to the Vast.ai API
    │   ├── VastAuthError           the API key was refused (401/403, expired session)
    │   │   └── VastKeyMissing      no API key configured anywhere
    │   ├── VastUnreachable         connection refused, reset, timed out (temporary)
    │   ├── VastRateLimited         429: too many requests (temporary)
    │   ├── VastQuotaExceeded       429 search_quota_exceeded: the daily search quota is spent
    │   ├── VastNotFound            404: no such instance (or key, or route)
    │   ├── VastRequestRejected     another 4xx: bad arguments, billing, limits
    │   ├── VastServerError         5xx from Vast
    │   ├── VastProtocolError       an answer that does not follow Vast's API
    │   ├── VastLogsUnavailable     the logs of an instance did not become ready in time
    │   └── VastCreateFailed        a create failed; carries the contract id it may have left
    │       └── OfferUnavailable    the offer is gone (single use, rented by someone else)
    ├── RemoteError                 SSH to an instance: connections, commands, tunnels
    │   ├── SshUnreachable          refused, reset, timed out, dropped (temporary)
    │   ├── SshAuthFailed           the instance refused our key
    │   ├── HostKeyChanged          the host key differs from the one pinned on first contact
    │   ├── SshKeyError             a local key file is unusable (permissions, passphrase, format)
    │   ├── RemoteCommandFailed     a remote command exited non-zero
    │   ├── RemoteTimeout           a remote command or wait took longer than allowed
    │   │   └── InstanceBusy        another command kept changing the instance too long
    │   ├── LayoutNotDetected       no ComfyUI checkout / venv found on the instance
    │   ├── TunnelError             a port forward could not be opened or kept up
    │   └── DownloadFailed          a download on the instance failed (HTTP, network, disk)
    │       ├── DiskFull            not enough free space on the instance for the file
    │       └── ChecksumMismatch    the downloaded file's sha256 is not the expected one
    ├── CatalogError                node pack and model catalogs (ComfyUI-Manager, registry, hubs)
    │   ├── CatalogUnavailable      a catalog could not be reached (temporary)
    │   └── CatalogFormatError      a catalog answered something that is not its format
    ├── BackupError                 the workflow backup repository cannot be used (git)
    ├── NodePackError               a custom node pack could not be installed, loaded or removed
    │   ├── ProtectedChangeRefused  its requirements would change torch & co: nothing installed
    │   ├── ProtectedRolledBack     an install changed a protected package anyway: rolled back
    │   ├── RequirementsFailed      pip could not install the pack's requirements
    │   └── PackImportFailed        ComfyUI did not load the pack after its restart
    ├── StateError                  the local state database failed (locked, unreachable, …)
    └── SandboxError                the built-in sandbox could not start or was misused

Exit codes (documented in README, "Exit codes"):
    0 ok · 1 other error · 2 usage · 3 workflow invalid · 4 execution failed ·
    5 interrupted · 6 timeout · 7 unreachable / network · 130 Ctrl+C · 143 SIGTERM/SIGHUP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class ComfyfleetError(Exception):
    """Base of every comfyfleet error: a message, an optional hint, an exit code."""

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(ComfyfleetError):
    """The user gave something unusable (a missing file, a bad flag value)."""

    exit_code = 2


class ConfigError(UsageError):
    """A settings file or environment variable holds a bad value."""


class WorkflowError(ComfyfleetError):
    """A workflow that cannot be used as given."""

    exit_code = 3


class WorkflowFormatError(WorkflowError):
    """The file is not a ComfyUI workflow (neither UI nor API format), or is broken."""


class ConversionError(WorkflowError):
    """A UI-format workflow cannot be converted to API format."""


class OverrideError(WorkflowError):
    """A --set or --input names no node/input, or more than one."""

    exit_code = 2


@dataclass(frozen=True)
class NodeErrorDetail:
    """One entry of a node's `errors` list, as ComfyUI reports it."""

    type: str
    message: str
    details: str = ""
    input_name: str | None = None
    allowed: Sequence[Any] | None = None  # value_not_in_list: the allowed values, when known
    extra_info: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        text = self.message
        if self.details:
            text += f": {self.details}"
        if self.type == "value_not_in_list" and self.allowed is not None:
            shown = ", ".join(repr(v) for v in list(self.allowed)[:20])
            more = "" if len(self.allowed) <= 20 else f", … ({len(self.allowed)} in all)"
            text += f" (allowed: {shown or 'none'}{more})"
        return text


@dataclass(frozen=True)
class NodeError:
    """Every error ComfyUI reported for one node."""

    node_id: str
    class_type: str
    errors: Sequence[NodeErrorDetail]
    dependent_outputs: Sequence[str] = ()
    title: str | None = None


class WorkflowInvalid(WorkflowError):
    """Validation failed: `error_type` is ComfyUI's top-level type, `node_errors` per node."""

    def __init__(
        self,
        error_type: str,
        message: str,
        node_errors: Sequence[NodeError] = (),
        *,
        details: str = "",
        hint: str | None = None,
    ) -> None:
        self.error_type = error_type
        self.node_errors = list(node_errors)
        self.details = details
        super().__init__(self._render(message, details, self.node_errors), hint=hint)

    @staticmethod
    def _render(message: str, details: str, node_errors: Sequence[NodeError]) -> str:
        lines = [message + (f" ({details})" if details and not node_errors else "")]
        for ne in node_errors:
            title = f" '{ne.title}'" if ne.title and ne.title != ne.class_type else ""
            lines.append(f"  node {ne.node_id} ({ne.class_type}){title}:")
            for err in ne.errors:
                where = f"input '{err.input_name}': " if err.input_name else ""
                lines.append(f"    - {where}{err.describe()}")
        return "\n".join(lines)


class PromptRejected(WorkflowInvalid):
    """The server answered 400 to POST /prompt."""


class ComfyError(ComfyfleetError):
    """Talking to a ComfyUI server failed."""

    exit_code = 1


class ComfyUnreachable(ComfyError):
    """The server could not be reached (refused, reset, timed out); worth retrying.

    `maybe_delivered`: the request may have reached the server (the answer was lost or late),
    so a POST may have taken effect.
    """

    exit_code = 7
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        self.maybe_delivered = maybe_delivered
        super().__init__(message, hint=hint)


class ComfyAuthError(ComfyError):
    """The server or the proxy in front of it refused our credentials."""

    exit_code = 7


class ComfyProtocolError(ComfyError):
    """The server answered something that does not follow ComfyUI's API."""


class ComfyRequestRejected(ComfyError):
    """The server understood a request and refused it (4xx other than 401/403 auth)."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class ComfyNotFound(ComfyRequestRejected):
    """The server has no such file, folder or entry (404)."""


class PromptLost(ComfyError):
    """A prompt left the queue without a history entry (deleted, or the server restarted)."""

    retryable = True


class ExecutionFailed(ComfyError):
    """A node raised while the prompt ran (ComfyUI's execution_error)."""

    exit_code = 4

    def __init__(
        self,
        prompt_id: str,
        node_id: str,
        node_type: str,
        exception_type: str,
        exception_message: str,
        traceback: Sequence[str] = (),
        *,
        hint: str | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = list(traceback)
        msg = (
            f"prompt {prompt_id} failed in node {node_id} ({node_type}): "
            f"{exception_type}: {exception_message.strip()}"
        )
        if self.traceback:
            msg += "\n" + "".join(self.traceback).rstrip()
        super().__init__(msg, hint=hint)


class ExecutionInterrupted(ComfyError):
    """The prompt was interrupted before it finished."""

    exit_code = 5

    def __init__(self, prompt_id: str, node_id: str | None, *, hint: str | None = None) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        where = f" at node {node_id}" if node_id else ""
        super().__init__(f"prompt {prompt_id} was interrupted{where}", hint=hint)


class JobTimeout(ComfyError):
    """No result arrived before the deadline."""

    exit_code = 6


class OutputError(ComfyError):
    """An output file could not be fetched, was unsafe, or failed verification."""


class StateError(ComfyfleetError):
    """The state database could not be opened, migrated, read or written.

    Messages name the database without its password and say what to do.
    """


class SandboxError(ComfyfleetError):
    """The built-in sandbox could not start, or was asked for something it cannot do."""


class VastError(ComfyfleetError):
    """Talking to the Vast.ai API failed.

    `status` is the HTTP status (None for transport failures) and `code` Vast's error code
    (`no_such_ask`, `invalid_args`, ...) when the answer carried one. Messages never hold the
    API key.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        super().__init__(message, hint=hint)


class VastAuthError(VastError):
    """Vast refused the API key (invalid, deleted, expired session, missing permission)."""

    exit_code = 7


class VastKeyMissing(VastAuthError):
    """No Vast API key is configured (environment, stored key, or the vastai CLI's files)."""

    exit_code = 2


class VastUnreachable(VastError):
    """The Vast API could not be reached (refused, reset, timed out); worth retrying."""

    exit_code = 7
    retryable = True


class VastRateLimited(VastError):
    """Vast answered 429 (too many requests) after every retry; try again shortly."""

    retryable = True


class VastQuotaExceeded(VastError):
    """The daily offer-search quota is spent; `reset_at` (epoch s) says when it resets."""

    def __init__(
        self,
        message: str,
        *,
        reset_at: float | None,
        hint: str | None = None,
        status: int | None = 429,
        code: str | None = "search_quota_exceeded",
    ) -> None:
        self.reset_at = reset_at
        super().__init__(message, hint=hint, status=status, code=code)


class VastNotFound(VastError):
    """Vast has no such instance (or key); for destroy this counts as success."""


class VastRequestRejected(VastError):
    """Vast understood a request and refused it (400/402/403/409/422...)."""


class VastServerError(VastError):
    """Vast answered 5xx; 502/503/504 are temporary."""

    retryable = True


class VastProtocolError(VastError):
    """Vast answered something that does not follow its API (not JSON, missing fields)."""


class VastLogsUnavailable(VastError):
    """An instance's logs did not become ready in time (the result URL never answered 200)."""

    retryable = True


class VastCreateFailed(VastError):
    """Creating an instance failed.

    `created_instance_id` is the contract Vast reported anyway (it bills until destroyed);
    `outcome_unknown` is True when the request may have reached Vast without an answer, so an
    instance may exist that only its label can find.
    """

    def __init__(
        self,
        message: str,
        *,
        created_instance_id: int | None = None,
        outcome_unknown: bool = False,
        hint: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.created_instance_id = created_instance_id
        self.outcome_unknown = outcome_unknown
        super().__init__(message, hint=hint, status=status, code=code)


class OfferUnavailable(VastCreateFailed):
    """The offer is gone (offers are single use and short-lived); search again."""

    retryable = True


class RemoteError(ComfyfleetError):
    """Talking to an instance over SSH failed (connection, command, tunnel)."""


class SshUnreachable(RemoteError):
    """The instance's SSH endpoint could not be reached or the connection dropped; retryable."""

    exit_code = 7
    retryable = True


class SshAuthFailed(RemoteError):
    """The instance refused every key we offered (not attached yet, or the wrong key)."""

    exit_code = 7


class HostKeyChanged(RemoteError):
    """The instance offered a host key other than the one pinned for it; never accepted."""

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        instance_ref: str,
        endpoint: str,
        pinned: Sequence[str],
        offered: str,
        known_hosts_file: str,
        hint: str | None = None,
    ) -> None:
        self.instance_ref = instance_ref
        self.endpoint = endpoint
        self.pinned = list(pinned)
        self.offered = offered
        self.known_hosts_file = known_hosts_file
        super().__init__(message, hint=hint)


class SshKeyError(RemoteError):
    """A local SSH key cannot be used (missing, loose permissions, passphrase, not a key)."""

    exit_code = 2


class RemoteCommandFailed(RemoteError):
    """A remote command exited non-zero; carries its exit code and the tail of its stderr."""

    def __init__(
        self,
        message: str,
        *,
        exit_code: int,
        command: str,
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        self.remote_exit_code = exit_code
        self.command = command
        self.stderr_tail = stderr_tail
        super().__init__(message, hint=hint)


class RemoteTimeout(RemoteError):
    """A remote command, or a wait on the instance, took longer than allowed."""

    exit_code = 6
    retryable = True


class InstanceBusy(RemoteTimeout):
    """Another comfyfleet command held the instance's change lock longer than we would wait."""

    def __init__(self, message: str, *, holder: str, hint: str | None = None) -> None:
        self.holder = holder
        super().__init__(message, hint=hint)


class LayoutNotDetected(RemoteError):
    """No ComfyUI checkout (or no venv, where one is needed) was found on the instance."""


class TunnelError(RemoteError):
    """A tunnel could not be opened, or did not come up in time."""

    exit_code = 7


class UnsafeSource(UsageError):
    """A model URL or file name that must not reach a remote command (scheme, characters)."""


class CatalogError(ComfyfleetError):
    """A node pack or model catalog (ComfyUI-Manager lists, registry, hubs) failed us."""


class CatalogUnavailable(CatalogError):
    """A catalog could not be reached (refused, reset, timed out, 5xx); worth retrying."""

    exit_code = 7
    retryable = True


class CatalogFormatError(CatalogError):
    """A catalog answered something that does not follow its format."""


class BackupError(ComfyfleetError):
    """The workflow backup repository cannot be opened, read or written (a git repository)."""


class NodePackError(ComfyfleetError):
    """A custom node pack could not be installed, loaded or removed on an instance."""


class ProtectedChangeRefused(NodePackError):
    """A pack's requirements would install, upgrade or downgrade a protected package (torch,
    xformers, ...): refused before anything was installed. `changes` reads `torch 2.8.0 ->
    2.7.1`, each with the requirement lines that lead to it."""

    def __init__(self, message: str, *, changes: Sequence[str], hint: str | None = None) -> None:
        self.changes = list(changes)
        super().__init__(message, hint=hint)


class ProtectedRolledBack(NodePackError):
    """An install changed a protected package despite the guard; the old versions were put
    back and the pack removed."""


class RequirementsFailed(NodePackError):
    """pip could not resolve or install a pack's requirements."""


class PackImportFailed(NodePackError):
    """ComfyUI did not load a pack after its restart; `log_lines` are what its log says."""

    def __init__(self, message: str, *, log_lines: Sequence[str], hint: str | None = None) -> None:
        self.log_lines = list(log_lines)
        super().__init__(message, hint=hint)


class DownloadFailed(RemoteError):
    """A download run on an instance failed: the server's answer, the network, or the disk.

    `status` is the HTTP status when the server answered one; messages never hold a token or
    a URL's query (where signatures live).
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message, hint=hint)


class DiskFull(DownloadFailed):
    """The instance lacks the space for a download: `needed` and `free` are in bytes."""

    def __init__(
        self, message: str, *, needed: int | None, free: int | None, hint: str | None = None
    ) -> None:
        self.needed = needed
        self.free = free
        super().__init__(message, hint=hint)


class ChecksumMismatch(DownloadFailed):
    """A downloaded file's sha256 differs from the expected one (the file was deleted)."""

    def __init__(self, message: str, *, expected: str, got: str, hint: str | None = None) -> None:
        self.expected = expected
        self.got = got
        super().__init__(message, hint=hint)
