"""Request bodies for the Vast API, checked before they are sent.

Vast's limits (reference/vast-api.md §4): env values at most 256 characters and 32768 in
all, onstart at most 4096, label at most 256 at create; ports are mapped with `-p A:A` env
keys. A bad value is a UsageError here rather than an opaque 400 from Vast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from comfyfleet.errors import UsageError

MAX_ENV_VALUE = 256
MAX_ENV_TOTAL = 32768
MAX_ONSTART = 4096
MAX_LABEL = 256
RUNTYPE_TOKENS = frozenset(
    {
        "ssh",
        "ssh_proxy",
        "ssh_direc",
        "ssh_direct",
        "jupyter",
        "jupyter_proxy",
        "jupyter_direc",
        "jupyter_direct",
        "args",
    }
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def port_env(ports: Sequence[int]) -> dict[str, str]:
    """`[22, 8188]` -> `{"-p 22:22": "1", "-p 8188:8188": "1"}` (container port = host side)."""
    out: dict[str, str] = {}
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise UsageError(f"port {port!r} is not a TCP port number (1-65535)")
        out[f"-p {port}:{port}"] = "1"
    return out


def create_env(env: Mapping[str, str], ports: Sequence[int]) -> dict[str, str]:
    """The `env` object of a create: port mappings, then variables. Limits are checked."""
    out = port_env(ports)
    total = 0
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise UsageError(
                f"environment variable name {name!r} is not valid",
                hint="use letters, digits and underscores; give ports through `ports`",
            )
        if not isinstance(value, str):
            raise UsageError(f"environment variable {name} must be a string")
        if len(value) > MAX_ENV_VALUE:
            # the value is not shown: env often carries tokens
            raise UsageError(
                f"environment variable {name} is {len(value)} characters long; "
                f"Vast allows {MAX_ENV_VALUE}"
            )
        total += len(name) + len(value)
        out[name] = value
    if total > MAX_ENV_TOTAL:
        raise UsageError(f"the environment holds {total} characters; Vast allows {MAX_ENV_TOTAL}")
    return out


def check_runtype(runtype: str) -> str:
    """A runtype as Vast takes it: space-separated tokens such as `ssh_direc ssh_proxy`."""
    tokens = runtype.split()
    unknown = [t for t in tokens if t not in RUNTYPE_TOKENS]
    if not tokens or unknown:
        raise UsageError(
            f"unknown runtype {runtype!r}",
            hint="valid tokens: " + ", ".join(sorted(RUNTYPE_TOKENS)),
        )
    return " ".join(tokens)


def create_body(
    *,
    image: str,
    disk_gb: float,
    env: Mapping[str, str],
    ports: Sequence[int],
    onstart: str | None,
    label: str | None,
    runtype: str,
    price: float | None,
    cancel_unavail: bool,
    image_login: str | None,
) -> dict[str, Any]:
    """The body of `PUT /asks/{offer}/`, as the official client sends it (§4.4)."""
    if not image.strip() or len(image) > 1024 or any(c.isspace() for c in image.strip()):
        raise UsageError(f"image {image!r} is not a Docker image reference")
    if not disk_gb > 0:
        raise UsageError(f"disk size must be positive, got {disk_gb} GB")
    if onstart is not None and len(onstart) > MAX_ONSTART:
        raise UsageError(f"onstart is {len(onstart)} characters long; Vast allows {MAX_ONSTART}")
    if label is not None and len(label) > MAX_LABEL:
        raise UsageError(f"label is {len(label)} characters long; Vast allows {MAX_LABEL}")
    if price is not None and not 0.001 <= price <= 128:
        raise UsageError(f"bid price {price} $/h is outside Vast's range 0.001-128")
    return {
        "client_id": "me",
        "image": image.strip(),
        "disk": float(disk_gb),
        "env": create_env(env, ports),
        "runtype": check_runtype(runtype),
        "onstart": onstart,
        "label": label,
        "price": price,
        "image_login": image_login,
        "cancel_unavail": cancel_unavail,
        "python_utf8": False,
        "lang_utf8": False,
        "use_jupyter_lab": False,
        "jupyter_dir": None,
        "force": False,
        "template_hash_id": None,
        "user": None,
        "extra": None,
    }


def check_public_key(text: str) -> str:
    """One OpenSSH public key line (`type base64 [comment]`); a private key is refused."""
    key = text.strip()
    if "PRIVATE KEY" in key:
        raise UsageError(
            "that is a private SSH key: never send it anywhere",
            hint="give the public key (the .pub file next to it)",
        )
    parts = key.split()
    if "\n" in key or len(parts) < 2 or parts[0] not in _KEY_TYPES or not _BASE64.match(parts[1]):
        shown = key[:40] + ("…" if len(key) > 40 else "")
        raise UsageError(
            f"not an OpenSSH public key: {shown!r}",
            hint="expected one line like 'ssh-ed25519 AAAA… user@host' (a .pub file)",
        )
    return key
