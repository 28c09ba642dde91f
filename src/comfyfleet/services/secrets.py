"""Per-instance web tokens, derived from one local secret and never stored.

Vast's ComfyUI image guards ComfyUI with a token proxy; we set `WEB_PASSWORD` at create time to
a token derived from the instance's tracking tag with HMAC-SHA256 over a 32-byte secret kept in
a 0600 file. So the token is in neither the database nor any log, and any process with the
secret file re-derives it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from comfyfleet.errors import ConfigError

SECRET_FILE = "instance-token.secret"


def _secret(config_dir: Path) -> bytes:
    path = config_dir / SECRET_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = secrets.token_bytes(32)
        try:
            # Created with its final mode (0600): never readable by others, not even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()  # another process won the race: use its secret
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    if len(data) < 32:
        raise ConfigError(
            f"the instance token secret {path} is damaged",
            hint="delete it only if no instance created with it is still running",
        )
    return data


def web_token(config_dir: Path, tracking_tag: str) -> str:
    """The web token (`WEB_PASSWORD`) of the instance with this tracking tag."""
    digest = hmac.new(_secret(config_dir), tracking_tag.encode(), hashlib.sha256)
    return digest.hexdigest()[:40]
