"""Turn a `--target` into a ComfyUI endpoint: a URL, or an instance id or name."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from comfyfleet.config import Settings
from comfyfleet.errors import UsageError
from comfyfleet.services.cloud import Cloud

CloudOpener = Callable[[], AbstractAsyncContextManager[Cloud]]


@dataclass(frozen=True)
class Target:
    """A ComfyUI endpoint. `display` is safe to print and store (never holds the token)."""

    url: str
    token: str | None = field(default=None, repr=False)
    name: str | None = None  # the instance, when the target is one

    @property
    def display(self) -> str:
        return f"{self.name} ({self.url})" if self.name else self.url


def is_url(target: str) -> bool:
    """Whether `target` is meant as a URL (anything with a scheme); else an instance ref."""
    return "://" in target


def url_target(target: str, settings: Settings, *, token: str | None = None) -> Target:
    """A ComfyUI base URL (http or https) as a Target.

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


async def resolve_target(
    target: str,
    settings: Settings,
    *,
    token: str | None = None,
    open_cloud: CloudOpener | None = None,
) -> Target:
    """A URL as is; otherwise an instance id or name, looked up (and refreshed) on the cloud.

    An instance's endpoint is its ComfyUI proxy port with the instance's web token.
    """
    if is_url(target) or open_cloud is None:
        return url_target(target, settings, token=token)
    from comfyfleet.services.endpoints import comfy_endpoint
    from comfyfleet.services.instances import find, refresh

    async with open_cloud() as cloud:
        row = await refresh(cloud, await find(cloud, target))
        endpoint = comfy_endpoint(cloud, row)
        if endpoint is None or not row.live:
            raise UsageError(
                f"instance {target!r} has no ComfyUI endpoint (status {row.status.value})",
                hint="start it (comfyfleet start ID) and wait until it is running",
            )
        return Target(endpoint.url, endpoint.token, name=row.display_name)
