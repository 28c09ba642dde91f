"""The comfyfleet key (generated once, 0600) and the checks on a key the user chose."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import asyncssh
import pytest

from comfyfleet.errors import SshKeyError
from comfyfleet.remote.keys import KeyPair, default_key_path, ensure_key, load_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_with_private_permissions(tmp_path: Path) -> None:
    old = os.umask(0)  # a careless umask must not widen anything
    try:
        key = ensure_key(tmp_path / "config")
    finally:
        os.umask(old)
    path = default_key_path(tmp_path / "config")
    assert key.private_path == path == tmp_path / "config" / "ssh" / "comfyfleet_ed25519"
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert mode(path.with_name(path.name + ".pub")) == 0o644
    assert key.public_text.startswith("ssh-ed25519 ") and " comfyfleet@" in key.public_text
    assert key.public_key_text() == path.with_name(path.name + ".pub").read_text().strip()
    private = asyncssh.read_private_key(str(path))
    assert key.fingerprint == private.get_fingerprint("sha256")
    again = ensure_key(tmp_path / "config")
    assert again == key  # kept, not regenerated


def test_concurrent_first_use_ends_with_one_key(tmp_path: Path) -> None:
    results: list[KeyPair] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        results.append(ensure_key(tmp_path / "config"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.fingerprint for r in results}) == 1
    assert [p.name for p in (tmp_path / "config" / "ssh").iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")
def test_users_own_keys_are_checked(tmp_path: Path) -> None:
    def keygen(name: str, passphrase: str = "") -> Path:
        path = tmp_path / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
            check=True,
            capture_output=True,
        )
        return path

    good = keygen("id_good")
    loaded = load_key(good)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(good)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert loaded.fingerprint == fingerprint

    good.chmod(0o644)
    with pytest.raises(SshKeyError, match="accessible by other users") as loose:
        load_key(good)
    assert f"chmod 600 '{good}'" in str(loose.value)

    locked = keygen("id_locked", passphrase="secret words")
    with pytest.raises(SshKeyError, match="passphrase") as protected:
        load_key(locked)
    assert "ssh-agent" in str(protected.value)

    junk = tmp_path / "id_junk"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    with pytest.raises(SshKeyError, match="not a usable private key"):
        load_key(junk)
    with pytest.raises(SshKeyError, match="does not exist"):
        load_key(tmp_path / "missing")
    with pytest.raises(SshKeyError, match="not a file"):
        load_key(tmp_path)
