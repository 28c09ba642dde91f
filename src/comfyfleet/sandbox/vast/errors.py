"""The answer the simulated Vast API gives when it refuses a request.

This is a wire-level value inside the sandbox (a status code and Vast's error body), not a
comfyfleet error: the server turns it into `{"success": false, "error": code, "msg": text}`.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Refuse the current request with `status` and Vast's error body."""

    def __init__(self, status: int, error: str, msg: str, **extra: Any) -> None:
        super().__init__(f"{status} {error}: {msg}")
        self.status = status
        self.error = error
        self.msg = msg
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": self.error, "msg": self.msg, **self.extra}
