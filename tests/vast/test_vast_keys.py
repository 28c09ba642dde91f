"""API key discovery and storage: lookup order, the 0600 file, the keyring, the missing key."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyfleet.errors import VastAuthError, VastKeyMissing
from comfyfleet.vast.keys import (
    KeyStoreUnavailable,
    find_api_key,
    forget_api_key,
    own_key_file,
    require_api_key,
    store_api_key,
    system_keyring,
)

KEY_A = "a" * 64
KEY_B = "b" * 64
KEY_C = "c" * 64
KEY_D = "d" * 64
KEY_E = "e" * 64


class MemoryKeyring:
    """An in-memory keyring; `broken` makes every call fail like a locked keyring."""

    name = "the test keyring"

    def __init__(self, value: str | None = None, *, broken: bool = False) -> None:
        self.value = value
        self.broken = broken

    def get(self) -> str | None:
        if self.broken:
            raise KeyStoreUnavailable("locked")
        return self.value

    def set(self, value: str) -> None:
        if self.broken:
            raise KeyStoreUnavailable("locked")
        self.value = value

    def delete(self) -> bool:
        if self.broken:
            raise KeyStoreUnavailable("locked")
        existed, self.value = self.value is not None, None
        return existed


@pytest.fixture
def home(isolated_home: Path) -> Path:
    return isolated_home


@pytest.fixture
def config_dir(home: Path) -> Path:
    return home / ".config" / "comfyfleet"


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_lookup_order(home: Path, config_dir: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(home / ".config")}
    ring = MemoryKeyring()
    assert find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring) is None

    _write(home / ".vast_api_key", f"  {KEY_D}\n")
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring)
    assert found is not None and found.value == KEY_D and ".vast_api_key" in found.source

    _write(home / ".config" / "vastai" / "vast_api_key", KEY_C + "\n")
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring)
    assert found is not None and found.value == KEY_C and "vastai CLI" in found.source

    # The vastai CLI's 2FA session key comes before its key file, as the CLI reads them.
    _write(home / ".config" / "vastai" / "vast_tfa_key", KEY_E)
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring)
    assert found is not None and found.value == KEY_E and "vast_tfa_key" in found.source

    _write(config_dir / "vast_api_key", KEY_B)
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring)
    assert found is not None and found.value == KEY_B

    ring.value = KEY_A
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring)
    assert found is not None and (found.value, found.source) == (KEY_A, "the test keyring")

    env["VAST_API_KEY"] = f" {KEY_D} "
    found = find_api_key(env=env, config_dir=config_dir, home=home, keyring=ring)
    assert found is not None and (found.value, found.source) == (KEY_D, "VAST_API_KEY")


def test_vastai_file_honours_xdg_config_home(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "xdg"
    _write(elsewhere / "vastai" / "vast_api_key", KEY_C)
    _write(home / ".config" / "vastai" / "vast_api_key", KEY_D)
    found = find_api_key(env={"XDG_CONFIG_HOME": str(elsewhere)}, home=home, keyring=None)
    assert found is not None and found.value == KEY_C
    found = find_api_key(env={}, home=home, keyring=None)  # no XDG: ~/.config
    assert found is not None and found.value == KEY_D


def test_empty_files_and_env_are_skipped(home: Path, config_dir: Path) -> None:
    _write(config_dir / "vast_api_key", "  \n")
    _write(home / ".vast_api_key", KEY_D)
    found = find_api_key(env={"VAST_API_KEY": " "}, config_dir=config_dir, home=home, keyring=None)
    assert found is not None and found.value == KEY_D


def test_a_broken_keyring_falls_back_to_files(home: Path, config_dir: Path) -> None:
    _write(config_dir / "vast_api_key", KEY_B)
    found = find_api_key(
        env={}, config_dir=config_dir, home=home, keyring=MemoryKeyring(broken=True)
    )
    assert found is not None and found.value == KEY_B


def test_missing_key_says_how_to_set_one(home: Path, config_dir: Path) -> None:
    with pytest.raises(VastKeyMissing) as info:
        require_api_key(env={}, config_dir=config_dir, home=home, keyring=None)
    error = info.value
    assert isinstance(error, VastAuthError) and error.exit_code == 2
    text = str(error)
    assert "comfyfleet login" in text and "VAST_API_KEY" in text and "--profile sandbox" in text


def test_an_unusable_key_names_its_source_but_not_the_key(home: Path, config_dir: Path) -> None:
    secret_part = "partofakey1234"
    _write(config_dir / "vast_api_key", f"{secret_part} and more words")
    with pytest.raises(VastAuthError) as info:
        find_api_key(env={}, config_dir=config_dir, home=home, keyring=None)
    assert str(config_dir / "vast_api_key") in str(info.value)
    assert secret_part not in str(info.value)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_store_writes_a_0600_file_in_a_0700_dir(
    home: Path, config_dir: Path, umask_zero: None
) -> None:
    where = store_api_key(f"{KEY_B}\n", config_dir=config_dir, keyring=None)
    path = own_key_file(config_dir)
    assert where == str(path)
    assert path.read_text() == KEY_B + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    assert [p.name for p in config_dir.iterdir()] == ["vast_api_key"]  # no temp file left
    # replacing keeps the mode, and the new key wins
    store_api_key(KEY_C, config_dir=config_dir, keyring=None)
    assert path.read_text().strip() == KEY_C
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = find_api_key(env={}, config_dir=config_dir, home=home, keyring=None)
    assert found is not None and found.value == KEY_C


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_world_readable_own_file_is_reported(
    home: Path, config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(config_dir / "vast_api_key", KEY_B)
    (config_dir / "vast_api_key").chmod(0o644)
    with caplog.at_level(logging.WARNING):
        found = find_api_key(env={}, config_dir=config_dir, home=home, keyring=None)
    assert found is not None and "chmod 600" in caplog.text and KEY_B not in caplog.text


def test_store_prefers_the_keyring_and_removes_a_stale_file(config_dir: Path) -> None:
    _write(config_dir / "vast_api_key", KEY_A)
    ring = MemoryKeyring()
    assert store_api_key(KEY_B, config_dir=config_dir, keyring=ring) == "the test keyring"
    assert ring.value == KEY_B
    assert not (config_dir / "vast_api_key").exists()


def test_store_falls_back_to_the_file_when_the_keyring_refuses(config_dir: Path) -> None:
    where = store_api_key(KEY_B, config_dir=config_dir, keyring=MemoryKeyring(broken=True))
    assert where == str(config_dir / "vast_api_key")


def test_store_refuses_an_unusable_key(config_dir: Path) -> None:
    with pytest.raises(VastAuthError):
        store_api_key("two words", config_dir=config_dir, keyring=None)
    assert not (config_dir / "vast_api_key").exists()


def test_forget(config_dir: Path) -> None:
    ring = MemoryKeyring(KEY_A)
    _write(config_dir / "vast_api_key", KEY_B)
    assert forget_api_key(config_dir=config_dir, keyring=ring) == [
        "the test keyring",
        str(config_dir / "vast_api_key"),
    ]
    assert forget_api_key(config_dir=config_dir, keyring=ring) == []


def test_found_key_hides_its_value(home: Path) -> None:
    found = find_api_key(env={"VAST_API_KEY": KEY_A}, home=home, keyring=None)
    assert found is not None
    assert KEY_A not in repr(found) + str(found)


@pytest.mark.parametrize(
    "backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"]
)
def test_no_usable_keyring_backend_means_the_file(
    backend: str, monkeypatch: pytest.MonkeyPatch, config_dir: Path
) -> None:
    import keyring

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", backend)
    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # re-read the choice
    assert system_keyring() is None
    assert store_api_key(KEY_B, config_dir=config_dir) == str(config_dir / "vast_api_key")
