"""Keep secrets out of the database: every JSON snapshot and free text passes through here.

Rules, applied recursively:
- a mapping entry whose key names a secret (password, token, api key, secret, credential,
  login, cookie, …) keeps its key and loses its value;
- an environment mapping (`env`, `extra_env`, `environment`) keeps its variable names and
  loses every value except Docker port/host options (`-p 8188:8188`), because a value's
  meaning cannot be judged from its name alone (a provisioning URL may carry a token);
- every string loses bearer tokens, URL passwords, secret query parameters and
  `NAME=value` / `NAME: value` assignments whose NAME names a secret, plus any `-e NAME=value`
  in a Docker-style environment string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"

# Words that make a name secret wherever they appear in it ...
_STRONG = (
    r"pass(?:word|wd|phrase)|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"credential"
)
# ... and words that do only as a whole part of it (`image_login`, not `design`).
_WEAK = r"pwd|pw|pass|auth|authorization|login|cookie|session|jwt|sig"
_NAME = rf"""
    (?<![a-z0-9_.-])
    (?:[a-z0-9_.-]*(?:{_STRONG})[a-z0-9_.-]*
      |(?:[a-z0-9]+[_.-])*(?:{_WEAK})(?:[_.-][a-z0-9]+)*)
    (?![a-z0-9])
"""
_SECRET_NAME = re.compile(_NAME, re.IGNORECASE | re.VERBOSE)
_ENV_KEYS = {"env", "extra_env", "environment", "env_vars"}
_DOCKER_OPTION = re.compile(r"^-[ph]\s")  # "-p 8188:8188", "-h host": no secret inside

_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_QUERY_KEY = re.compile(r"(?i)([?&;]key=)[^&#\s]*")
_ASSIGNMENT = re.compile(
    rf"""
    ({_NAME})                                    # a secret-looking name
    (["']?\s*(?:=|:(?!//))\s*)                 # = or : (JSON, YAML, shell, query), not "://"
    ("[^"]*"|'[^']*'|[^\s,;&"'}}]+)             # its value
    """,
    re.IGNORECASE | re.VERBOSE,
)
_DOCKER_ENV = re.compile(r"(-e\s+[A-Za-z_][A-Za-z0-9_]*=)(?:\"[^\"]*\"|'[^']*'|\S+)")


def is_secret_name(name: str) -> bool:
    """True when a key or variable name says its value is secret."""
    return _SECRET_NAME.fullmatch(name) is not None


def scrub_text(text: str) -> str:
    """`text` with every recognisable secret value replaced by `<redacted>`."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    text = _QUERY_KEY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _DOCKER_ENV.sub(lambda m: m.group(1) + REDACTED, text)
    return _ASSIGNMENT.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def _scrub_env(env: Any) -> Any:
    if isinstance(env, Mapping):
        return {str(k): (v if _DOCKER_OPTION.match(str(k)) else REDACTED) for k, v in env.items()}
    if isinstance(env, str):
        return scrub_text(env)
    if isinstance(env, list | tuple):
        # ["NAME=value", ...]: keep the names.
        return [str(item).split("=", 1)[0] + "=" + REDACTED for item in env]
    return REDACTED


def scrub(value: Any) -> Any:
    """A JSON-ready copy of `value` with secrets removed (see the module rules)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if name.lower() in _ENV_KEYS:
                out[name] = _scrub_env(item)
            elif is_secret_name(name) and item is not None and not isinstance(item, bool):
                out[name] = REDACTED
            else:
                out[name] = scrub(item)
        return out
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub_text(str(value))
