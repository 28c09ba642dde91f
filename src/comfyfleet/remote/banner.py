"""Is an SSH server answering? (A TCP connect and the `SSH-2.0-` identification line.)"""

from __future__ import annotations

import asyncio
import contextlib

MAX_PRELUDE_LINES = 20  # RFC 4253 §4.2: a server may send other lines before its banner


async def banner_check(host: str, port: int, timeout: float = 5.0) -> bool:
    """True when `host:port` greets with an SSH banner (`SSH-2.0-…`) within `timeout` s.

    Used by readiness checks: Vast reports an instance running before its SSH daemon answers,
    and a port that accepts TCP is not yet an SSH server. Never raises for network trouble
    (that is a plain "not yet").
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            for _ in range(MAX_PRELUDE_LINES):
                line = await reader.readline()
                if not line:
                    return False
                if line.startswith((b"SSH-2.0-", b"SSH-1.99-")):
                    return True
            return False
    except (OSError, TimeoutError, ValueError):  # ValueError: a line over the stream limit
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
