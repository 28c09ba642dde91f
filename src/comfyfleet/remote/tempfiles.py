"""A private temporary file on the instance, holding text sent over stdin (never argv).

    async with temp_file(conn, "onnx==1.19.0\n", suffix=".txt") as path:
        ...                                   # path: PurePosixPath on the instance

`mktemp` makes it 0600 under `$TMPDIR` (or /tmp); it is removed when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import PurePosixPath

from comfyfleet.errors import RemoteError
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.ssh import SshConnection

_WRITE = 'f=$(mktemp "${TMPDIR:-/tmp}/comfyfleet.XXXXXX$1") || exit 1; cat >"$f" && echo "$f"'


@contextlib.asynccontextmanager
async def temp_file(
    conn: SshConnection, text: str, *, suffix: str = ""
) -> AsyncIterator[PurePosixPath]:
    """A temporary file on the instance with `text` in it (see the module docstring)."""
    if "/" in suffix:
        raise RemoteError(f"a temporary file suffix cannot hold '/': {suffix!r}")
    cmd = RemoteCommand.of("sh", "-c", _WRITE, "comfyfleet-tmp", suffix)
    done = await run(conn, cmd, stdin=text, check=True)
    path = PurePosixPath(done.stdout.strip().splitlines()[-1])
    try:
        yield path
    finally:
        with contextlib.suppress(RemoteError):
            await run(conn, RemoteCommand.of("rm", "-f", "--", path))
