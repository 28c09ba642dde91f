"""Where the Vast API key comes from, and where `comfyfleet login` keeps it.

Lookup order (the first non-empty value wins; whitespace around it is stripped):

1. the `VAST_API_KEY` environment variable (as the official CLI and SDK);
2. comfyfleet's stored key: the OS keyring (service `comfyfleet`, user `vast_api_key`) when
   a usable keyring backend exists, then the file `<config dir>/vast_api_key`;
3. the official vastai CLI's files, as it reads them: its 2FA session key
   `$XDG_CONFIG_HOME/vastai/vast_tfa_key` (or under `~/.config`), its key file
   `.../vastai/vast_api_key`, then its legacy `~/.vast_api_key`.

The key never goes on a command line, into a log, an error or the database. `store_api_key`
writes the keyring when it can, else a file created with mode 0600 (never loosened by a
later chmod); its directory is created 0700. The keyring backend is injectable (`keyring=`):
"auto" asks the `keyring` library, None disables it, tests pass an in-memory store.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from comfyfleet.config import Settings
from comfyfleet.errors import VastAuthError, VastKeyMissing
from comfyfleet.util.redact import register_secret

log = logging.getLogger(__name__)

ENV_VAR = "VAST_API_KEY"
KEYRING_SERVICE = "comfyfleet"
KEYRING_USER = "vast_api_key"
KEY_FILE_NAME = "vast_api_key"
TFA_FILE_NAME = "vast_tfa_key"  # the vastai CLI's 2FA session key, which it prefers
MISSING_HINT = (
    "run `comfyfleet login` (it asks for the key and stores it safely), or set VAST_API_KEY; "
    "a key from `vastai set api-key` is found too. Get a key at "
    "https://cloud.vast.ai/manage-keys/ - or try everything without one: --profile sandbox"
)

_KEY_CHARS = frozenset(string.ascii_letters + string.digits + string.punctuation)


def check_api_key(api_key: str) -> str:
    """The key if it can travel in a header; else VastAuthError (the key is never echoed)."""
    if not api_key or not set(api_key) <= _KEY_CHARS:
        raise VastAuthError(
            "the Vast API key is empty or holds spaces or control characters",
            hint="copy the key again from https://cloud.vast.ai/manage-keys/ and store it "
            "with `comfyfleet login` or VAST_API_KEY",
        )
    return api_key


class KeyStore(Protocol):
    """A secret store holding one value (the OS keyring, or a fake in tests)."""

    name: str

    def get(self) -> str | None: ...

    def set(self, value: str) -> None: ...

    def delete(self) -> bool: ...


class KeyStoreUnavailable(Exception):
    """The store exists but refused to work (locked keyring, no session bus)."""


class SystemKeyring:
    """The OS keyring through the `keyring` library."""

    name = "the OS keyring"

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def get(self) -> str | None:
        from keyring.errors import KeyringError

        try:
            value = self._backend.get_password(KEYRING_SERVICE, KEYRING_USER)
        except (KeyringError, OSError) as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from None
        return value if isinstance(value, str) else None

    def set(self, value: str) -> None:
        from keyring.errors import KeyringError

        try:
            self._backend.set_password(KEYRING_SERVICE, KEYRING_USER, value)
        except (KeyringError, OSError) as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from None

    def delete(self) -> bool:
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            self._backend.delete_password(KEYRING_SERVICE, KEYRING_USER)
        except PasswordDeleteError:
            return False
        except (KeyringError, OSError) as exc:
            raise KeyStoreUnavailable(type(exc).__name__) from None
        return True


def system_keyring() -> KeyStore | None:
    """The OS keyring if the `keyring` library finds a usable backend, else None."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return SystemKeyring(backend)


KeyringChoice = KeyStore | None | Literal["auto"]


@dataclass(frozen=True)
class FoundKey:
    """An API key and where it was found (the value never shows in repr or str)."""

    value: str = field(repr=False)
    source: str

    def __str__(self) -> str:
        return f"Vast API key from {self.source}"


def own_key_file(config_dir: Path | None = None) -> Path:
    """comfyfleet's key file: `<config dir>/vast_api_key`."""
    return (config_dir or Settings().config_dir()) / KEY_FILE_NAME


def vastai_key_files(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """The official vastai CLI's key files, in the order it reads them."""
    env = os.environ if env is None else env
    home = home or Path.home()
    xdg = env.get("XDG_CONFIG_HOME")
    config_home = Path(xdg) if xdg else home / ".config"
    folder = config_home / "vastai"
    return [folder / TFA_FILE_NAME, folder / KEY_FILE_NAME, home / ".vast_api_key"]


def _resolve_keyring(choice: KeyringChoice) -> KeyStore | None:
    return system_keyring() if choice == "auto" else choice


def _read_key_file(path: Path, *, own: bool) -> str | None:
    try:
        if not path.is_file():
            return None
        if own and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s is readable by other users: run chmod 600 %s", path, path)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read the key file %s (%s)", path, type(exc).__name__)
        return None
    return text.strip() or None


def _found(value: str, source: str) -> FoundKey:
    try:
        check_api_key(value)
    except VastAuthError as exc:
        raise VastAuthError(
            f"the Vast API key in {source} is unusable: {exc.message}", hint=exc.hint
        ) from None
    register_secret(value)
    return FoundKey(value, source)


def find_api_key(
    *,
    env: Mapping[str, str] | None = None,
    config_dir: Path | None = None,
    home: Path | None = None,
    keyring: KeyringChoice = "auto",
) -> FoundKey | None:
    """The first key in the lookup order (module docstring), or None."""
    env = os.environ if env is None else env
    value = env.get(ENV_VAR, "").strip()
    if value:
        return _found(value, ENV_VAR)
    store = _resolve_keyring(keyring)
    if store is not None:
        try:
            stored = (store.get() or "").strip()
        except KeyStoreUnavailable as exc:
            log.warning("%s is unavailable (%s); looking in files", store.name, exc)
            stored = ""
        if stored:
            return _found(stored, store.name)
    own = own_key_file(config_dir)
    value = _read_key_file(own, own=True) or ""
    if value:
        return _found(value, str(own))
    for path in vastai_key_files(env, home):
        value = _read_key_file(path, own=False) or ""
        if value:
            return _found(value, f"the vastai CLI's key file {path}")
    return None


def require_api_key(
    *,
    env: Mapping[str, str] | None = None,
    config_dir: Path | None = None,
    home: Path | None = None,
    keyring: KeyringChoice = "auto",
) -> FoundKey:
    """Like `find_api_key`, but no key is a VastKeyMissing that says how to set one."""
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=keyring)
    if found is None:
        raise VastKeyMissing("no Vast API key is configured", hint=MISSING_HINT)
    return found


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` through a file born 0600, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def store_api_key(
    api_key: str,
    *,
    config_dir: Path | None = None,
    keyring: KeyringChoice = "auto",
) -> str:
    """Keep `api_key` for later runs; returns where (the keyring's name or the file path)."""
    value = check_api_key(api_key.strip())
    register_secret(value)
    own = own_key_file(config_dir)
    store = _resolve_keyring(keyring)
    if store is not None:
        try:
            store.set(value)
        except KeyStoreUnavailable as exc:
            log.warning("%s refused the key (%s); using the file %s", store.name, exc, own)
        else:
            # a key file left from before would be a stale secret on disk
            own.unlink(missing_ok=True)
            return store.name
    _write_private(own, value)
    return str(own)


def forget_api_key(*, config_dir: Path | None = None, keyring: KeyringChoice = "auto") -> list[str]:
    """Remove comfyfleet's stored key (keyring and file); returns where it was removed from."""
    removed: list[str] = []
    store = _resolve_keyring(keyring)
    if store is not None:
        try:
            if store.delete():
                removed.append(store.name)
        except KeyStoreUnavailable as exc:
            log.warning("%s is unavailable (%s)", store.name, exc)
    own = own_key_file(config_dir)
    if own.exists():
        own.unlink()
        removed.append(str(own))
    return removed
