"""Steps `prepare` and `env apply` share: install a pack without restarting, pull a model from
the first source that works, restart ComfyUI once and see what it loaded.

Each step turns a failure it can explain (a refused requirement, a failed clone, a download
that did not work) into an `Unresolved` item, so one bad pack or file does not hide what
the others did; errors about the instance itself (unreachable, no layout) still raise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from comfyfleet.catalog import ModelSource
from comfyfleet.control.prepare_plan import Unresolved
from comfyfleet.errors import (
    CatalogError,
    ComfyfleetError,
    DownloadFailed,
    NodePackError,
    ProtectedChangeRefused,
    RemoteCommandFailed,
    UsageError,
)
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.models import PlannedPull, PullProgress, PullResult, pull
from comfyfleet.services.nodes import InstallResult, install_pack
from comfyfleet.services.nodes_verify import Loaded, loaded, restart
from comfyfleet.services.remote_ops import open_session
from comfyfleet.services.targets import Target, resolve_target
from comfyfleet.util.lines import Line

Progress = Callable[[PullProgress], None]
#: Failures of one pack or one file: reported, and the next one is tried.
ITEM_ERRORS = (
    UsageError,
    NodePackError,
    RemoteCommandFailed,
    DownloadFailed,
    CatalogError,
)


async def instance_target(cloud: Cloud, ref: str) -> Target:
    """The ComfyUI endpoint of instance `ref` (its token proxy, with its token)."""
    return await resolve_target(
        ref, cloud.settings, open_cloud=lambda: contextlib.nullcontext(cloud)
    )


def _first_line(exc: ComfyfleetError) -> str:
    return exc.message.splitlines()[0] if exc.message else type(exc).__name__


async def install_deferred(
    cloud: Cloud,
    ref: str,
    source: str,
    *,
    label: str,
    git_ref: str | None = None,
    on_line: Line,
) -> InstallResult | Unresolved:
    """Install a pack without restarting ComfyUI; an Unresolved item when it cannot be."""
    try:
        return await install_pack(
            cloud, ref, source, git_ref=git_ref, on_line=on_line, restart=False
        )
    except ProtectedChangeRefused as exc:
        return Unresolved(
            "pack",
            label,
            "refused",
            "; ".join(exc.changes) or _first_line(exc),
            exc.hint,
        )
    except ITEM_ERRORS as exc:
        return Unresolved(
            "pack",
            label,
            "failed",
            exc.message,
            exc.hint,
        )


async def pull_first(
    cloud: Cloud,
    ref: str,
    sources: Sequence[ModelSource | PlannedPull],
    *,
    item: str,
    on_progress: Progress | None,
    on_line: Line,
) -> PullResult | Unresolved:
    """Pull from the first of `sources` that works; an Unresolved item when none does."""
    failures: list[str] = []
    hint: str | None = None
    for source in sources:
        spec = source.source.spec if isinstance(source, PlannedPull) else source.spec
        on_line(f"pulling models/{item} from {spec}")
        try:
            return await pull(cloud, ref, source, on_progress=on_progress)
        except ITEM_ERRORS as exc:
            failures.append(f"{spec}: {_first_line(exc)}")
            hint = exc.hint
            on_line(f"  failed: {_first_line(exc)}")
    return Unresolved("model", item, "failed", "; ".join(failures), hint)


@dataclass(frozen=True)
class Restarted:
    """ComfyUI restarted once, and what it made of each pack installed before."""

    seconds: float
    packs: dict[str, Loaded]


async def restart_and_check(
    cloud: Cloud, ref: str, packs: Sequence[str], *, why: str, on_line: Line
) -> Restarted:
    """Restart ComfyUI (once) and read what it loaded of each custom_nodes entry `packs`."""
    async with open_session(cloud, ref) as session:
        layout = await session.layout(cloud)
        seconds = await restart(cloud, session, layout, on_line=on_line, why=why)
        found = {}
        for name in packs:
            found[name] = await loaded(cloud, session, layout, name, f"custom_nodes.{name}")
        return Restarted(seconds, found)


def import_failure(name: str, found: Loaded) -> Unresolved | None:
    """The Unresolved item of a pack ComfyUI did not load (None when it did, or when
    neither its log nor /object_info can tell)."""
    if found.failed:
        assert found.line is not None
        lines = (found.line.text, *found.details)
        return Unresolved(
            "pack",
            name,
            "import-failed",
            found.line.text,
            f"see the whole log with comfyfleet logs ID; remove it with comfyfleet nodes rm "
            f"ID {name}",
            lines,
        )
    return None
