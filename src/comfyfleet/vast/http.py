"""HTTP transport to the Vast.ai API: auth, retries, rate limits and error mapping.

Retries follow the official client (reference/vast-api.md §1.2): `retries` is the total
number of attempts; 429, 502, 503, 504 and transport failures are retried after the
`Retry-After` value when it is numeric and at most 60 s (a larger one means no retry), else
after 0.15 s x 1.5^n, all waited through the Clock. The daily search quota (429
`search_quota_exceeded`) is never retried. Requests that are not idempotent (create) are
retried only when Vast cannot have acted on them: a 429, or a connection that never opened.

Every failure leaves as a `comfyfleet.errors.VastError`. The API key travels only in the
`Authorization: Bearer` header (never in a URL, since URLs get logged) and every text that
reaches an error or a log passes through `util.redact`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from comfyfleet import __version__
from comfyfleet.errors import (
    VastAuthError,
    VastError,
    VastNotFound,
    VastProtocolError,
    VastQuotaExceeded,
    VastRateLimited,
    VastRequestRejected,
    VastServerError,
    VastUnreachable,
)
from comfyfleet.util.clock import Clock
from comfyfleet.util.redact import install_log_redaction, redact, redact_url, register_secret
from comfyfleet.vast.keys import check_api_key

log = logging.getLogger(__name__)
# httpx logs each request's full URL at INFO: result URLs carry signatures
install_log_redaction(__name__, "httpx", "httpcore")

DEFAULT_BASE_URL = "https://console.vast.ai"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0
BACKOFF_START = 0.15
BACKOFF_FACTOR = 1.5
#: Code of a VastUnreachable whose non-idempotent request may have reached Vast.
OUTCOME_UNKNOWN = "outcome_unknown"

KEY_HINT = (
    "check the key at https://cloud.vast.ai/manage-keys/ and set it with `comfyfleet login` or "
    "VAST_API_KEY (`--profile sandbox` works without one)"
)
_AUTH_404_MARKERS = ("session expired", "invalid user key", "log in again")


def backoff_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (0-based) without Retry-After."""
    return BACKOFF_START * BACKOFF_FACTOR**attempt


def retry_delay(response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before retrying `response`; None means do not retry.

    A numeric `Retry-After` of at most 60 s is honoured, a larger one forbids the retry;
    without one (Vast usually sends none) the backoff applies.
    """
    header = response.headers.get("Retry-After")
    if header is not None:
        try:
            seconds = float(header.strip())
        except ValueError:
            return backoff_delay(attempt)
        if seconds > MAX_RETRY_AFTER:
            return None
        if seconds >= 0:
            return seconds
    return backoff_delay(attempt)


class VastHttp:
    """An httpx client bound to the Vast API with one key."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock,
        retries: int = 3,
        timeout: float = 120.0,
    ) -> None:
        self._key = check_api_key(api_key)
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.display_url = redact_url(self.base_url)
        self._clock = clock
        self._attempts = max(1, int(retries))
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"comfyfleet/{__version__}",
            },
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"VastHttp({self.display_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    def redact(self, text: str) -> str:
        return redact(text, extra=(self._key,))

    async def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send a request with retries; 2xx and statuses in `accept` are returned, the rest raise.

        POST/PUT/DELETE without a body send `{}`, as the official client does.
        """
        if json_body is None and method in ("POST", "PUT", "DELETE"):
            json_body = {}
        response: httpx.Response | None = None
        for attempt in range(self._attempts):
            last = attempt == self._attempts - 1
            log.debug("%s %s%s (attempt %d)", method, self.display_url, path, attempt + 1)
            try:
                response = await self._client.request(method, path, json=json_body, params=params)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                error = self._unreachable(exc, what, outcome_unknown=not (idempotent or never_sent))
                if (
                    last
                    or not (idempotent or never_sent)
                    or isinstance(exc, httpx.UnsupportedProtocol)
                ):
                    raise error from None  # the message holds the redacted cause
                log.info("%s (retrying)", error.message)
                await self._clock.sleep(backoff_delay(attempt))
                continue
            status = response.status_code
            if last or status not in RETRY_STATUSES or _is_search_quota(response):
                break
            if status != 429 and not idempotent:
                break  # a 5xx on a create: Vast may have acted; never repeat it blindly
            wait = retry_delay(response, attempt)
            if wait is None:
                break
            log.info("%s: HTTP %d (retrying in %.2f s)", what, status, wait)
            await self._clock.sleep(wait)
        assert response is not None
        if 200 <= response.status_code < 300 or response.status_code in accept:
            return response
        raise self.error_for(response, what)

    async def get_unauthenticated(self, url: str, *, what: str) -> httpx.Response:
        """One GET of an absolute URL without the API key (result URLs live on S3)."""
        request = self._client.build_request("GET", url)
        request.headers.pop("Authorization", None)
        try:
            return await self._client.send(request, follow_redirects=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc, what, outcome_unknown=False) from None

    def decode(self, response: httpx.Response, what: str) -> Any:
        """The JSON body; VastProtocolError when it is not JSON."""
        try:
            return json.loads(response.content)
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            hint = None
            if "html" in kind:
                hint = (
                    f"a web page answered instead of Vast's API: check the URL {self.display_url}"
                )
            raise VastProtocolError(
                f"{what}: the answer is not JSON ({kind}): {self._excerpt(response, 80)!r}",
                hint=hint,
                status=response.status_code,
            ) from None

    def body_error(self, data: Any, response: httpx.Response, what: str) -> VastError | None:
        """The error a 2xx answer reports in its body (`"success": false`), if any."""
        if isinstance(data, Mapping) and data.get("success") is False:
            return self._error(response.status_code, _error_code(data), _error_msg(data), what, {})
        return None

    def check_success(self, data: Any, response: httpx.Response, what: str) -> None:
        """Raise for a 2xx answer whose body says `"success": false`."""
        error = self.body_error(data, response, what)
        if error is not None:
            raise error

    def error_for(self, response: httpx.Response, what: str) -> VastError:
        """The VastError for a failed answer (JSON error bodies and plain text alike)."""
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            code, msg = _error_code(data), _error_msg(data)
        else:
            code, msg = None, self._excerpt(response, 200)
        return self._error(response.status_code, code, msg, what, response.headers)

    def _error(
        self,
        status: int,
        code: str | None,
        msg: str | None,
        what: str,
        headers: Mapping[str, str],
    ) -> VastError:
        detail = self.redact(" ".join(x for x in (code, msg) if x) or "no detail message")
        text = f"{what}: HTTP {status}: {detail}"
        lowered = detail.lower()
        if status == 401 or (status == 404 and any(m in lowered for m in _AUTH_404_MARKERS)):
            return VastAuthError(
                f"Vast refused the API key ({text})", hint=KEY_HINT, status=status, code=code
            )
        if status == 403:
            return VastAuthError(
                text,
                hint="the key lacks a permission for this, or the account may not do it; "
                + KEY_HINT,
                status=status,
                code=code,
            )
        if status == 429 and code == "search_quota_exceeded":
            return _quota_error(text, headers)
        if status == 429:
            return VastRateLimited(
                text,
                hint="Vast limits how often each endpoint may be called; wait a little and retry",
                status=status,
                code=code,
            )
        if status in (404, 410):
            return VastNotFound(text, status=status, code=code)
        if 300 <= status < 400:
            where = redact_url(headers.get("location", "")) or "elsewhere"
            return VastProtocolError(
                f"{what}: HTTP {status}: redirected to {where}",
                hint=f"{self.display_url} does not serve Vast's API there: check the URL",
                status=status,
            )
        if 400 <= status < 500 or 200 <= status < 300:
            return VastRequestRejected(text, status=status, code=code)
        return VastServerError(
            text,
            hint="Vast's servers are having trouble; retry in a minute",
            status=status,
            code=code,
        )

    def _unreachable(
        self, exc: httpx.TransportError, what: str, *, outcome_unknown: bool
    ) -> VastUnreachable:
        kind = type(exc).__name__
        reason = self.redact(str(exc)) or kind
        return VastUnreachable(
            f"{what}: cannot reach {self.display_url} ({kind}: {reason})",
            hint="check the network connection (and the sandbox, under --profile sandbox)",
            code=OUTCOME_UNKNOWN if outcome_unknown else None,
        )

    def _excerpt(self, response: httpx.Response, limit: int) -> str:
        """The body for a message: a gateway's HTML error page says only its title."""
        text = self.redact(response.content.decode("utf-8", errors="replace").strip())
        if text.startswith("<"):
            title = _TITLE.search(text)
            text = " ".join((title.group(1) if title else _TAG.sub(" ", text)).split())
        return text if len(text) <= limit else text[:limit] + "…"


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _error_code(data: Mapping[str, Any]) -> str | None:
    code = data.get("error")
    return code if isinstance(code, str) and code else None


def _error_msg(data: Mapping[str, Any]) -> str | None:
    for key in ("msg", "message", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _is_search_quota(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    try:
        data = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(data, Mapping) and data.get("error") == "search_quota_exceeded"


def _quota_error(text: str, headers: Mapping[str, str]) -> VastQuotaExceeded:
    reset_at: float | None = None
    try:
        reset_at = float(headers.get("X-RateLimit-Reset", ""))
    except ValueError:
        reset_at = None
    when = (
        datetime.fromtimestamp(reset_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        if reset_at is not None
        else "00:00 UTC"
    )
    return VastQuotaExceeded(
        f"the daily offer-search quota is spent ({text}); it resets at {when}",
        reset_at=reset_at,
        hint=f"wait until {when}, or create from an offer you already found",
    )
