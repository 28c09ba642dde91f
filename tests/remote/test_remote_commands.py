"""Remote commands on both peers: exit codes, streaming, quoting of hostile values, secrets."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Callable
from pathlib import Path, PurePosixPath

import pytest

from comfyfleet.errors import RemoteCommandFailed, RemoteTimeout, UsageError
from comfyfleet.remote.commands import RemoteCommand, quote, run, stream
from comfyfleet.remote.ssh import SshConnection, connect
from comfyfleet.remote.target import SshTarget
from comfyfleet.util.clock import SystemClock

HOSTILE = [
    "x; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "a\ntouch {canary}",
    "' ; touch {canary}; echo '",
    '" ; touch {canary}; echo "',
    "-n && touch {canary}",
    "*",
    "with space and \\ backslash and 'quotes'",
]


@pytest.fixture(params=["sandbox", "sshd"])
async def conn(request: pytest.FixtureRequest) -> AsyncIterator[SshConnection]:
    target: SshTarget = request.getfixturevalue(f"{request.param}_target")
    async with connect(target, clock=SystemClock()) as connection:
        yield connection


async def test_exit_codes_and_output(conn: SshConnection) -> None:
    done = await run(conn, "echo out; echo err >&2; exit 7")
    assert (done.exit_code, done.stdout, done.stderr) == (7, "out\n", "err\n")
    assert (await run(conn, "kill -9 $$")).exit_code == 128 + 9
    echoed = await run(conn, "tr a-z A-Z", stdin="hello\n" * 20000)
    assert echoed.stdout == "HELLO\n" * 20000


async def test_check_raises_with_the_quoted_command_and_stderr_tail(conn: SshConnection) -> None:
    cmd = RemoteCommand.of("ls", "/no such dir; $(x)")
    with pytest.raises(RemoteCommandFailed) as caught:
        await run(conn, cmd, check=True)
    error = caught.value
    assert error.remote_exit_code == 2
    assert error.command == "ls '/no such dir; $(x)'"
    assert "ls '/no such dir; $(x)'" in str(error)
    assert "No such file or directory" in error.stderr_tail


async def test_timeout(conn: SshConnection) -> None:
    with pytest.raises(RemoteTimeout):
        await run(conn, "sleep 30", timeout=0.5)


async def test_stream_delivers_lines_as_they_come(conn: SshConnection) -> None:
    seen: list[tuple[str, str, float]] = []
    loop = asyncio.get_running_loop()

    def sink(name: str) -> Callable[[str], None]:
        return lambda text: seen.append((name, text, loop.time()))

    script = "printf 'a\\nb'; sleep 0.8; printf 'c\\n'; echo e1 >&2; printf 'ü' | head -c1; exit 3"
    code = await stream(conn, script, sink("out"), sink("err"))
    assert code == 3
    out = [text for name, text, _ in seen if name == "out"]
    assert out == ["a\n", "bc\n", "\ufffd"]  # a cut multi-byte character is replaced, not lost
    assert [text for name, text, _ in seen if name == "err"] == ["e1\n"]
    times = [t for name, _, t in seen if name == "out"]
    assert times[1] - times[0] > 0.4  # the first line arrived before the command went on


async def test_stream_chunks_and_stdin(conn: SshConnection) -> None:
    chunks: list[str] = []
    code = await stream(
        conn, "cat; exit 0", chunks.append, chunks.append, stdin=b"x" * 300_000, lines=False
    )
    assert code == 0 and "".join(chunks) == "x" * 300_000


async def test_hostile_values_stay_one_argument(conn: SshConnection, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    for template in HOSTILE:
        value = template.format(canary=canary)
        workdir = PurePosixPath(tmp_path) / value.replace("/", "_")
        assert (await run(conn, RemoteCommand.of("mkdir", "-p", "--", workdir))).exit_code == 0
        printed = await run(
            conn,
            RemoteCommand.of("sh", "-c", 'printf "%s|%s|%s" "$1" "$V" "$PWD"', "sh", value)
            .with_env({"V": value})
            .in_dir(workdir),
        )
        assert printed.exit_code == 0, printed.stderr
        assert printed.stdout == f"{value}|{value}|{workdir}", template
        assert not canary.exists(), template


async def test_unquoted_values_would_inject(conn: SshConnection, tmp_path: Path) -> None:
    # The control experiment for the test above: without quoting, the canary appears.
    canary = tmp_path / "canary"
    await run(conn, f"printf %s {HOSTILE[0].format(canary=canary)}")
    assert canary.exists()


def test_builder_rejects_bad_env_names_and_quotes_paths() -> None:
    with pytest.raises(UsageError):
        RemoteCommand.of("true").with_env({"A=B; rm": "x"})
    assert quote(PurePosixPath("/a b/c")) == "'/a b/c'"
    cmd = RemoteCommand.of("python", "-m", "pip", "install", "x>=1").in_dir("/w s")
    assert shlex.split(cmd.render()) == [
        "cd",
        "--",
        "/w s",
        "&&",
        "python",
        "-m",
        "pip",
        "install",
        "x>=1",
    ]


async def test_secrets_go_through_stdin_not_the_process_list(
    conn: SshConnection, tmp_path: Path
) -> None:
    secret = "hf_SECRETTOKEN0123456789"
    go = tmp_path / "go"
    wait = f"while [ ! -e {quote(go)} ]; do sleep 0.05; done"
    script = f'read -r token; {wait}; printf %s "$token" | wc -c'
    reader = asyncio.ensure_future(run(conn, script, stdin=secret + "\n"))
    try:
        for _ in range(100):  # until the command runs, holding the secret
            listing = await run(conn, "ps -eo args")
            if "read -r token" in listing.stdout:
                break
            await asyncio.sleep(0.05)
        assert "read -r token" in listing.stdout  # the command is visible…
        assert secret not in listing.stdout  # …its secret is not
    finally:
        go.touch()
    assert (await reader).stdout.strip() == str(len(secret))
