"""The one exception tree of comfyfleet.

Every error a user can see is one of these. Adapters translate foreign exceptions (httpx,
websockets, asyncssh, SQLAlchemy) into them at their boundary, so nothing above an adapter
catches a library's exception. Each error says what happened, to what, and what to do
(`hint`), and carries the process exit code the CLI uses.

    ComfyfleetError
    ├── UsageError                  bad input from the user (files, flags, values)
    │   └── ConfigError             bad settings file / environment value
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
    │   ├── ExecutionFailed         a node raised while running
    │   ├── ExecutionInterrupted    the prompt was interrupted
    │   ├── JobTimeout              no result before the deadline
    │   └── OutputError             an output could not be fetched or was unsafe
    └── SandboxError                the built-in sandbox could not start or was misused

Exit codes (documented in README, "Exit codes"):
    0 ok · 1 other error · 2 usage · 3 workflow invalid · 4 execution failed ·
    5 interrupted · 6 timeout · 7 unreachable / network · 130 Ctrl+C
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
    """The server could not be reached (refused, reset, timed out); worth retrying."""

    exit_code = 7
    retryable = True


class ComfyAuthError(ComfyError):
    """The server or the proxy in front of it refused our credentials."""

    exit_code = 7


class ComfyProtocolError(ComfyError):
    """The server answered something that does not follow ComfyUI's API."""


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


class SandboxError(ComfyfleetError):
    """The built-in sandbox could not start, or was asked for something it cannot do."""
