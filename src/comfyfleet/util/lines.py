"""Progress lines: the callback services report through, and the default that says nothing."""

from __future__ import annotations

from collections.abc import Callable

Line = Callable[[str], None]


def quiet(_text: str) -> None:
    """Drop a progress line (where nobody listens)."""
