"""ssh config: generated files read by the real OpenSSH client, the Include line, pruning."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from tests.remote.opensshd import OpenSshd

from comfyfleet.errors import HostKeyChanged, UsageError
from comfyfleet.remote.commands import run
from comfyfleet.remote.hostkeys import read_pins
from comfyfleet.remote.interactive import openssh_command
from comfyfleet.remote.ssh import connect
from comfyfleet.remote.sshconfig import (
    INCLUDE_COMMENT,
    MARKER,
    HostEntry,
    alias_for,
    config_path,
    ensure_include,
    include_line,
    prune,
    render_host_file,
    sync,
    write_host_file,
)
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

CLOCK = SystemClock()
USER_CONFIG = (
    "# my own settings\nHost *\n  User nobody\n  ServerAliveInterval 99\n\n"
    "Host gitbox\n  HostName git.example.com\n"
)


def ssh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def effective(config: Path, alias: str) -> dict[str, str]:
    """What OpenSSH itself makes of our config (`ssh -G`)."""
    done = ssh("-F", str(config), "-G", alias)
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def user_setup(tmp_path: Path, target: SshTarget) -> tuple[Path, Path]:
    """A user's ssh config with our Include, and our per-instance file (paths with spaces)."""
    conf_dir = tmp_path / "Application Support" / "comfyfleet" / "ssh" / "config.d"
    user_config = tmp_path / "dot ssh" / "config"
    user_config.parent.mkdir(mode=0o700)
    user_config.write_text(USER_CONFIG)
    user_config.chmod(0o600)
    sync(conf_dir, [HostEntry.from_target(target)], user_config=user_config)
    return user_config, conf_dir


@pytest.mark.parametrize("peer", ["sandbox", "sshd"])
def test_the_real_ssh_client_uses_the_generated_config(
    peer: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target: SshTarget = request.getfixturevalue(f"{peer}_target")
    target = SshTarget(**{**vars(target), "known_hosts_path": tmp_path / "k h" / "known"})
    user_config, _ = user_setup(tmp_path, target)
    seen = effective(user_config, target.alias)
    assert seen["hostname"] == "127.0.0.1" and seen["port"] == str(target.port)
    assert seen["user"] == target.user  # ours, not the user's `Host *` default: we come first
    assert seen["identityfile"] == str(target.key_path)
    assert seen["userknownhostsfile"] == str(target.known_hosts_path)  # one path, with spaces
    assert seen["stricthostkeychecking"] == "accept-new"
    assert seen["serveraliveinterval"] == "30"
    assert "localforward" not in seen
    argv = openssh_command(target, user_config, "echo $((6*7)) at $PWD; exit 3")
    done = subprocess.run(
        [*argv[:1], "-o", "BatchMode=yes", *argv[1:]], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("42 at /")
    # OpenSSH pinned the key on first contact in a file our client reads as its pin.
    pins = read_pins(target.known_hosts_path)
    assert [p.hosts for p in pins] == [(f"[127.0.0.1]:{target.port}",)]


async def test_pins_agree_between_our_client_and_openssh(
    sshd: OpenSshd, sshd_target: SshTarget, tmp_path: Path
) -> None:
    # Our client pins first (the server has ed25519 and ECDSA keys)…
    async with connect(sshd_target, clock=CLOCK) as conn:
        assert (await run(conn, "true")).exit_code == 0
    # …then OpenSSH, forbidden to add keys, must accept exactly what we pinned.
    strict = openssh_command(sshd_target, None, "echo strict-ok")
    done = subprocess.run(
        [strict[0], "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         *strict[1:]],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "strict-ok\n"), done.stderr
    # A re-keyed server: OpenSSH refuses it through the same file, and so do we.
    sshd.rekey()
    user_config, _ = user_setup(tmp_path, sshd_target)
    argv = openssh_command(sshd_target, user_config, "true")
    refused = subprocess.run(
        [argv[0], "-o", "BatchMode=yes", *argv[1:]], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    with pytest.raises(HostKeyChanged):
        await connect(sshd_target, clock=CLOCK)


def test_rendered_file_and_windows_paths() -> None:
    appdata = r"C:\Users\Ann Lee\AppData\comfyfleet\ssh"
    entry = HostEntry(
        alias="cf-my-4090-tx",
        hostname="ssh4.vast.ai",
        port=31337,
        known_hosts_file=PureWindowsPath(appdata) / "known_hosts.d" / "7",
        instance_ref="7",
        identity_file=PureWindowsPath(appdata) / "comfyfleet_ed25519",
        local_forwards=((8188, 18188),),
    )  # fmt: skip
    text = render_host_file(entry)
    assert text.splitlines()[0] == MARKER
    assert '  IdentityFile "C:/Users/Ann Lee/AppData/comfyfleet/ssh/comfyfleet_ed25519"' in text
    assert "  LocalForward 8188 127.0.0.1:18188" in text
    assert "StrictHostKeyChecking no" not in text and "  StrictHostKeyChecking accept-new" in text
    assert config_path(PurePosixPath("/home/a/100%/k")) == "/home/a/100%%/k"  # ssh tokens
    assert include_line(PureWindowsPath(r"C:\Users\Ann Lee\cf")) == (
        'Include "C:/Users/Ann Lee/cf/*.conf"'
    )
    with pytest.raises(UsageError):
        config_path(PurePosixPath('/a"b'))
    with pytest.raises(UsageError):
        render_host_file(HostEntry("bad alias; x", "h", 22, PurePosixPath("/k"), "1"))


@pytest.mark.parametrize(
    ("kwargs", "taken", "alias"),
    [
        ({"label": "my", "gpu_name": "RTX 4090", "location": "Texas, US"}, (), "cf-my-4090-tx"),
        ({"label": "comfyfleet:studio:0f3c", "gpu_name": "RTX_3090", "location": "Sweden, SE"},
         (), "cf-studio-3090-se"),
        ({"label": "comfyfleet:manual:0f3c", "gpu_name": "H100 SXM", "location": "Quebec, CA"},
         (), "cf-h100-sxm-ca"),
        ({"label": "x; rm -rf / $(id)", "gpu_name": "", "location": ""}, (), "cf-x-rm-rf-id"),
        ({}, (), "cf-12345"),
        ({"gpu_name": "RTX 4090", "location": "Texas, US"}, ("cf-4090-tx",), "cf-4090-tx-12345"),
        ({"gpu_name": "RTX 4090", "location": "Texas, US"},
         ("cf-4090-tx", "cf-4090-tx-12345"), "cf-4090-tx-12345-2"),
        ({"label": "a" * 80}, (), "cf-" + "a" * 37),
    ],
)  # fmt: skip
def test_aliases(kwargs: dict[str, str], taken: tuple[str, ...], alias: str) -> None:
    assert alias_for("12345", taken=taken, **kwargs) == alias


def test_include_is_added_once_at_the_top_with_a_backup(tmp_path: Path) -> None:
    config = tmp_path / ".ssh" / "config"
    config.parent.mkdir()
    original = b"Host a\r\n  User b\r\n"
    config.write_bytes(original)
    config.chmod(0o664)  # group-writable: OpenSSH would refuse it
    conf_dir = tmp_path / "cf dir" / "config.d"
    first = ensure_include(config, conf_dir, now=datetime(2030, 1, 2, 3, 4, 5))
    assert first.changed and first.backup == config.with_name(
        "config.comfyfleet-20300102-030405.bak"
    )
    assert first.backup.read_bytes() == original
    data = config.read_bytes()
    line = include_line(conf_dir)
    assert data == f"{INCLUDE_COMMENT}\r\n{line}\r\n\r\n".encode() + original  # nothing else
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    again = ensure_include(config, conf_dir, now=datetime(2031, 1, 1))
    assert (again.changed, again.backup) == (False, None)
    assert config.read_bytes() == data
    assert len(list(config.parent.glob("config.comfyfleet-*.bak"))) == 1
    # The same Include written by hand (other case, `=`, spacing) counts as present.
    config.write_text(f'  INCLUDE="{conf_dir}/*.conf"\n')
    assert not ensure_include(config, conf_dir).changed


def test_include_creates_the_file_and_writes_through_a_symlink(tmp_path: Path) -> None:
    home_ssh = tmp_path / "home" / ".ssh"
    created = ensure_include(home_ssh / "config", tmp_path / "cf")
    assert created.changed and created.backup is None
    assert stat.S_IMODE(home_ssh.stat().st_mode) == 0o700
    assert stat.S_IMODE((home_ssh / "config").stat().st_mode) == 0o600
    dotfiles = tmp_path / "dotfiles" / "ssh_config"
    dotfiles.parent.mkdir()
    dotfiles.write_text("Host x\n")
    link = tmp_path / "link" / "config"
    link.parent.mkdir()
    link.symlink_to(dotfiles)
    result = ensure_include(link, tmp_path / "cf")
    assert link.is_symlink() and result.path == dotfiles
    assert dotfiles.read_text().endswith("\n\nHost x\n")


def test_prune_removes_only_our_files_of_gone_instances(tmp_path: Path) -> None:
    conf_dir = tmp_path / "config.d"
    keep = HostEntry("cf-keep", "h", 22, PurePosixPath("/k1"), "1")
    gone = HostEntry("cf-gone", "h", 23, PurePosixPath("/k2"), "2")
    for entry in (keep, gone):
        write_host_file(conf_dir, entry)
    mine = conf_dir / "cf-mine.conf"
    mine.write_text("Host cf-mine\n  HostName example.com\n")  # the user's own, no marker
    assert prune(conf_dir, ["cf-keep"]) == [conf_dir / "cf-gone.conf"]
    assert sorted(p.name for p in conf_dir.iterdir()) == ["cf-keep.conf", "cf-mine.conf"]
    assert stat.S_IMODE((conf_dir / "cf-keep.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE(conf_dir.stat().st_mode) == 0o700
    with pytest.raises(UsageError):
        write_host_file(conf_dir, HostEntry("cf-mine", "h", 22, PurePosixPath("/k"), "3"))
    assert mine.read_text().startswith("Host cf-mine")


def test_openssh_argv_without_a_config(tmp_path: Path) -> None:
    target = SshTarget(
        host="1.2.3.4",
        port=4022,
        key_path=tmp_path / "key",
        known_hosts_path=tmp_path / "k h",
        alias="cf-x",
        instance_ref="9",
    )
    argv = openssh_command(target, None, ["ls", "a b; rm"], tty=True)
    assert argv[:3] == ["ssh", "-p", "4022"]
    assert f'UserKnownHostsFile="{tmp_path / "k h"}"' in argv
    assert argv[-3:] == ["--", "root@1.2.3.4", "ls 'a b; rm'"]
    assert "-t" in argv and os.path.basename(argv[0]) == "ssh"
