"""After packs change: restart ComfyUI, then see what it loaded.

Two witnesses, both read fresh after the restart:

* `/object_info` through the instance's token proxy (the client's per-server cache is
  refreshed): every class a custom pack adds has `python_module` = `custom_nodes.<entry>`;
* ComfyUI's log (tailed over SSH): the latest `Import times for custom nodes:` block, and
  for a pack that failed its `IMPORT FAILED` line with the traceback and `Cannot import`
  lines above it (`remote.comfylog`).
"""

from __future__ import annotations

from dataclasses import dataclass

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.errors import (
    ComfyError,
    PackImportFailed,
    RemoteError,
    RemoteTimeout,
    WorkflowFormatError,
)
from comfyfleet.remote import manage
from comfyfleet.remote.comfylog import ImportLine, StartupReport, last_startup
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.instance_ops import comfy_answers
from comfyfleet.services.remote_ops import Session
from comfyfleet.util.lines import Line

Modules = dict[str, frozenset[str]]  # python_module -> class names
LOG_TAIL_SHOWN = 30  # log lines shown when ComfyUI does not come back


async def classes_by_module(cloud: Cloud, session: Session) -> Modules | None:
    """Node classes of the instance's ComfyUI by `python_module`; None when it does not
    answer (or the instance has no public ComfyUI endpoint)."""
    endpoint = comfy_endpoint(cloud, session.row)
    if endpoint is None:
        return None
    try:
        async with ComfyClient(
            endpoint.url, token=endpoint.token, settings=cloud.settings.comfy, clock=cloud.clock
        ) as client:
            catalog = await client.object_info(refresh=True)
    except ComfyError:
        return None
    found: dict[str, set[str]] = {}
    for name in catalog:
        try:
            module = catalog[name].python_module
        except WorkflowFormatError:
            continue  # a pack's malformed class is not one ComfyUI can run
        found.setdefault(module, set()).add(name)
    return {module: frozenset(names) for module, names in found.items()}


async def startup_report(
    cloud: Cloud, session: Session, layout: InstanceLayout
) -> StartupReport | None:
    """The latest start's custom-node report from ComfyUI's log; None when unreadable."""
    if layout.log_file is None:
        return None
    try:
        log = await manage.tail_log(session.conn, layout, cloud.settings.nodes.log_lines)
    except RemoteError:
        return None
    return last_startup(log)


async def restart(
    cloud: Cloud, session: Session, layout: InstanceLayout, *, on_line: Line, why: str
) -> float:
    """Restart ComfyUI and wait until it answers; when it does not come back, the error
    shows the end of its log (a pack can take the whole server down)."""
    on_line(f"restarting ComfyUI ({why})")
    ref = str(session.row.vast_id)
    try:
        seconds = await manage.restart_comfy(
            session.conn,
            layout,
            lambda: comfy_answers(cloud, ref),
            clock=cloud.clock,
            timeout=cloud.settings.nodes.restart_timeout,
        )
    except RemoteTimeout as exc:
        tail: list[str] = []
        if layout.log_file is not None:
            try:
                log = await manage.tail_log(session.conn, layout, LOG_TAIL_SHOWN)
                tail = log.splitlines()
            except RemoteError:
                pass
        raise PackImportFailed(
            f"ComfyUI on instance {session.row.display_name} did not answer after its restart "
            f"({why})" + "".join(f"\n  | {line}" for line in tail),
            log_lines=tail,
            hint=f"see the whole log: comfyfleet logs {ref}",
        ) from exc
    on_line(f"ComfyUI answers again ({seconds:.1f} s)")
    return seconds


@dataclass(frozen=True)
class Loaded:
    """What ComfyUI made of one custom_nodes entry after its latest start."""

    classes: frozenset[str] | None  # None: /object_info could not be read
    line: ImportLine | None  # its import-times line; None: not in the report
    details: tuple[str, ...]  # why it failed, from the log

    @property
    def failed(self) -> bool:
        return self.line is not None and self.line.failed

    @property
    def imported(self) -> bool | None:
        """True/False when the log or /object_info says so; None when neither does."""
        if self.line is not None:
            return not self.line.failed
        if self.classes:
            return True
        return None


async def loaded(
    cloud: Cloud, session: Session, layout: InstanceLayout, entry: str, module: str
) -> Loaded:
    """What ComfyUI loaded of entry `entry` (classes of `module`) at its latest start."""
    modules = await classes_by_module(cloud, session)
    report = await startup_report(cloud, session, layout)
    line = report.find(entry) if report else None
    details = tuple(report.failure_lines(entry)) if report and line and line.failed else ()
    classes = modules.get(module, frozenset()) if modules is not None else None
    return Loaded(classes, line, details)
