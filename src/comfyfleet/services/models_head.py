"""What the server says about a model file before it is downloaded, and its refusals.

    answer = await ask_server(conn, request, source)   # size, Hugging Face's sha256, or raises

A HEAD (redirects followed) from the instance gives the size and, for Hugging Face, the
sha256; auth failures and missing files are raised before anything is written. Signed CDN
URLs are signed for GET and refuse HEAD: then the first byte's answer (`download.probe`)
gives the size, so the free-space check still runs before the download.
"""

from __future__ import annotations

import dataclasses

from comfyfleet.catalog import ModelSource
from comfyfleet.errors import DownloadFailed
from comfyfleet.remote import download
from comfyfleet.remote.download import DownloadRequest, HeadAnswer
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.services.models_source import HF_HINT, shown_source

#: curl exit codes worth a resumed retry: connect, partial file, timeout/stall, empty reply,
#: send/receive failures, HTTP/2 stream errors.
TRANSIENT_EXITS = frozenset({7, 16, 18, 28, 52, 55, 56, 92})


async def ask_server(
    conn: SshConnection, request: DownloadRequest, source: ModelSource
) -> HeadAnswer:
    """The server's answer about `request` (see the module docstring); raises DownloadFailed."""
    answer = await download.head(conn, request)
    shown = request.shown
    if answer.exit_code == 127:
        raise DownloadFailed(
            f"curl is not installed on {conn.target.describe()}",
            hint="install it there: comfyfleet exec ID -- apt-get install -y curl",
        )
    if answer.exit_code != 0 or answer.first_status is None:
        raise DownloadFailed(
            f"{shown} could not be reached from {conn.target.describe()}: "
            f"{answer.error or f'curl exit code {answer.exit_code}'}",
            hint="check the URL; the instance needs outbound internet access",
            retryable=answer.exit_code in TRANSIENT_EXITS,
        )
    status = answer.first_status
    if status in (401, 403):
        raise refused(request, source, status)
    if status in (404, 410):
        raise DownloadFailed(
            f"{shown} answered HTTP {status}: no such file",
            status=status,
            hint="check the repository, revision and path (or the model version)",
        )
    if answer.size is None and not answer.ok:
        probed = await download.probe(conn, request)
        if probed.ok and probed.size is not None:
            return dataclasses.replace(answer, status=probed.status, size=probed.size)
    return answer


def refused(request: DownloadRequest, source: ModelSource, status: int) -> DownloadFailed:
    """The error for a 401/403 from the server of `source`, with the fix for its hub."""
    shown = request.shown
    if source.kind == "huggingface":
        why = "refused the token" if request.headers else "needs a token"
        return DownloadFailed(
            f"{shown} {why} (HTTP {status}): the repository is gated or private",
            status=status,
            hint=HF_HINT,
        )
    if source.kind == "civitai":
        return DownloadFailed(
            f"Civitai refused the download of {shown_source(source)} (HTTP {status})",
            status=status,
            hint="check CIVITAI_TOKEN: a current API key from civitai.com/user/account",
        )
    return DownloadFailed(
        f"{shown} refused the download (HTTP {status})",
        status=status,
        hint="comfyfleet sends no credentials to plain URLs: use a URL that needs none",
    )
