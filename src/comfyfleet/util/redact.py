"""Keep secrets (API keys, tokens, passwords) out of messages and logs.

Code that holds a secret registers it (`register_secret`); `redact` then replaces every
registered secret, and anything that looks like a credential in a URL or header
(`api_key=...`, `token=...`, `Bearer ...`, `user:pass@`), before text reaches an error
message or a log record. `RedactingFilter` applies the same to every log record it sees.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MASK = "***"
# Shorter values would mangle ordinary text; real keys and tokens are far longer.
MIN_SECRET_LENGTH = 8

_CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # query or form parameters that carry credentials (also S3-style presigned signatures)
    (
        re.compile(
            r"(?i)\b(api[_-]?key|access[_-]?token|token|password|passwd|secret|"
            r"x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig)=[^&\s\"'<>]+"
        ),
        rf"\1={MASK}",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # base64 user:password; a digit, + / or = tells it from an ordinary word after "basic"
    (re.compile(r"(?i)\b(basic)\s+(?=[A-Za-z]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"), rf"\1 {MASK}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), rf"\1{MASK}@"),
)


class SecretRegistry:
    """A thread-safe set of secret strings to mask wherever text leaves the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        """Remember `secret` (and its URL-encoded forms); short or empty values are ignored."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})

    def discard(self, secret: str) -> None:
        with self._lock:
            self._secrets -= {secret, quote(secret, safe=""), quote_plus(secret)}

    def snapshot(self) -> list[str]:
        with self._lock:
            # longest first, so a secret that contains another is masked whole
            return sorted(self._secrets, key=len, reverse=True)


SECRETS = SecretRegistry()


def register_secret(secret: str | None) -> None:
    """Mask `secret` in everything `redact` sees from now on (process-wide)."""
    SECRETS.add(secret)


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with registered secrets, `extra` secrets and credential-looking parts masked."""
    secrets = SECRETS.snapshot()
    secrets.extend(s for s in extra if s and len(s) >= MIN_SECRET_LENGTH)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _CREDENTIAL_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """A URL fit for messages: no user info, query or fragment (they may carry credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        netloc += f":{port}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in each record's final message (and exception)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
        return True


def install_log_redaction(*logger_names: str) -> None:
    """Add one RedactingFilter to each named logger (httpx logs every URL it requests)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
