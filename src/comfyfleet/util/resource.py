"""The async-context-manager shape every resource-owning object shares."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    """`async with x:` calls `x.aopen()` (nothing by default) and always `x.aclose()`."""

    async def aopen(self) -> None:
        """Acquire what the resource needs before use (default: nothing)."""

    async def aclose(self) -> None:
        """Release everything; safe to call more than once."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.aopen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
