"""Turn a `--target` into a ComfyUI endpoint (a URL and an optional bearer token)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from comfyfleet.config import Settings
from comfyfleet.errors import UsageError


@dataclass(frozen=True)
class Target:
    """A ComfyUI endpoint. `display` is safe to print and store (never holds the token)."""

    url: str
    token: str | None = None

    @property
    def display(self) -> str:
        return self.url


def resolve_target(target: str, settings: Settings, *, token: str | None = None) -> Target:
    """Resolve `--target`: a ComfyUI base URL (http or https).

    The token comes from `token`, else settings (`COMFYFLEET_COMFY__TOKEN`); credentials
    embedded in the URL (`https://user:pass@host`) are refused so they never reach a log.
    """
    text = target.strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UsageError(
            f"target {target!r} is not a ComfyUI URL",
            hint="give the server's base URL, e.g. --target http://127.0.0.1:8188",
        )
    if parts.username or parts.password:
        raise UsageError(
            f"target URL for {parts.hostname} carries credentials",
            hint="pass the token with --token or COMFYFLEET_COMFY__TOKEN, not inside the URL",
        )
    if parts.query or parts.fragment:
        raise UsageError(
            f"target URL {parts.scheme}://{parts.netloc}{parts.path} has a query or fragment",
            hint="give only scheme, host, port and path; pass a token with --token",
        )
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    secret = token or (settings.comfy.token.get_secret_value() if settings.comfy.token else None)
    return Target(url=clean, token=secret)
