"""Is an SSH server answering? (A TCP connect and the `SSH-2.0-` identification line.)"""

from __future__ import annotations

import asyncio
import contextlib


async def banner_check(host: str, port: int, timeout: float = 5.0) -> bool:
    """True when `host:port` accepts a connection and greets with an SSH-2.0 banner.

    Used by readiness checks: Vast reports an instance running before its SSH daemon answers.
    Never raises for network trouble (that is a plain "not yet").
    """
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.startswith((b"SSH-2.0-", b"SSH-1.99-"))
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
