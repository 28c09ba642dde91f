"""Peers of the SSH layer's tests: a sandbox instance host and a real OpenSSH sshd per module.

Both authorize the session's comfyfleet key. Each test gets targets with a fresh known_hosts
file of its own, so pinning starts from first contact in every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.remote.opensshd import OpenSshd, require_sshd
from tests.sandbox_host.hostkit import RunningHost, launch

from comfyfleet.remote.keys import KeyPair, ensure_key
from comfyfleet.remote.target import SshTarget


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox-cache")


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """The comfyfleet key every peer authorizes (generated the way users get theirs)."""
    return ensure_key(tmp_path_factory.mktemp("client-config"))


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path, client_key: KeyPair
) -> Iterator[RunningHost]:
    """A sandbox instance host (Vast's ComfyUI image layout), ComfyUI started at once."""
    running = launch(tmp_path_factory.mktemp("host"), wheel_cache, provisioning_seconds=0)
    keys = running.spec.authorized_keys_file
    keys.write_text(keys.read_text() + client_key.public_text + "\n")
    try:
        yield running
    finally:
        running.process.stop()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, client_key: KeyPair) -> Iterator[OpenSshd]:
    """A real OpenSSH server; its sessions see WORKSPACE=<temp>/workspace (a plain image)."""
    require_sshd()
    base = tmp_path_factory.mktemp("sshd")
    workspace = base / "workspace"
    workspace.mkdir()
    server = OpenSshd(
        base, (client_key.public_text + "\n").encode(), env={"WORKSPACE": str(workspace)}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_target(
    host_port: int, user: str, key: KeyPair, tmp_path: Path, ref: str = "31337"
) -> SshTarget:
    return SshTarget(
        host="127.0.0.1",
        port=host_port,
        user=user,
        key_path=key.private_path,
        known_hosts_path=tmp_path / "known_hosts.d" / ref,
        alias=f"cf-{ref}",
        instance_ref=ref,
    )


@pytest.fixture
def sandbox_target(sandbox: RunningHost, client_key: KeyPair, tmp_path: Path) -> SshTarget:
    return make_target(sandbox.process.ssh_port, "root", client_key, tmp_path)


@pytest.fixture
def sshd_target(sshd: OpenSshd, client_key: KeyPair, tmp_path: Path) -> SshTarget:
    return make_target(sshd.port, sshd.user, client_key, tmp_path, ref="sshd-1")
