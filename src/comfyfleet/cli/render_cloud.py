"""Terminal rendering for offers and instances."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from comfyfleet.cli.console import stderr_console, stdout_console

if TYPE_CHECKING:
    from comfyfleet.models.vast import Offer
    from comfyfleet.services.instances import InstanceView
    from comfyfleet.services.reconcile import Action
    from comfyfleet.services.up import UpResult
    from comfyfleet.state import InstanceEvent


class StatusLines:
    """Progress of long cloud work as timestamped lines on stderr (stdout stays for results)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            self.console.print(f"[{elapsed:6.1f}s] {text}", markup=False, highlight=False)


def _money(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def print_offers(offers: Sequence[Offer], query: Mapping[str, object]) -> None:
    """The offers as a table; none: what Vast was asked for and how to widen it (stderr)."""
    if not offers:
        from comfyfleet.vast.search import NO_MATCH_HINT, describe_filters

        stdout_console().print("no offers match")
        stderr_console().print(f"searched for: {describe_filters(query)}")
        stderr_console().print(f"hint: {NO_MATCH_HINT}")
        return
    table = Table(header_style="bold")
    for col in (
        "offer",
        "$/hr",
        "GPU",
        "VRAM",
        "reliab.",
        "DLP/$",
        "CUDA",
        "disk",
        "inet ↓/↑",
        "where",
    ):
        table.add_column(col, justify="right" if col not in ("GPU", "where") else "left")
    for o in offers:
        table.add_row(
            str(o.id),
            _money(o.dph_total),
            f"{o.num_gpus}x {o.gpu_name}",
            f"{o.vram_gb:g} GB",
            "-" if o.reliability is None else f"{o.reliability * 100:.1f}%",
            "-" if o.dlperf_per_dphtotal is None else f"{o.dlperf_per_dphtotal:.0f}",
            "-" if o.cuda_max_good is None else f"{o.cuda_max_good:g}",
            f"{o.disk_space:.0f} GB",
            f"{o.inet_down or 0:.0f}/{o.inet_up or 0:.0f}",
            o.geolocation or "-",
        )
    stdout_console().print(table)


def print_up(result: UpResult) -> None:
    out = stdout_console()
    row = result.row
    out.print(
        f"instance {result.instance.id} ({row.display_name}) is ready: "
        f"{result.offer.num_gpus}x {result.offer.gpu_name} at {_money(result.offer.dph_total)}/h",
        markup=False,
    )
    out.print(
        f"ComfyUI: {result.url}  (token-protected; use `comfyfleet run --target "
        f"{row.display_name}` or `comfyfleet connect {row.display_name}`)",
        markup=False,
    )


def print_actions(actions: Sequence[Action]) -> None:
    console = stderr_console()
    for action in actions:
        console.print(f"reconcile: {action.describe()}", markup=False)


def print_instances(views: Sequence[InstanceView]) -> None:
    table = Table(header_style="bold")
    for col in ("id", "name", "status", "ready", "GPU", "$/hr", "cost", "ComfyUI", "tunnel"):
        table.add_column(col)
    for v in views:
        r = v.row
        table.add_row(
            str(r.vast_id),
            r.name or "-",
            r.status.value if r.live else "destroyed",
            "yes" if r.ready_at else "-",
            f"{r.num_gpus or 1}x {r.gpu_name}" if r.gpu_name else "-",
            _money(r.dph_total),
            _money(v.cost.total_usd, 4),
            v.url or "-",
            f"{v.tunnel.url} ({v.tunnel.status})" if v.tunnel else "-",
        )
    stdout_console().print(table if views else "no instances")


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _shown_value(key: str, value: object) -> object:
    """How `show` prints one field: times in UTC, durations and money for people."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else value
    if key.endswith("_at"):
        return f"{_utc(value)} UTC"
    if key.endswith("_seconds"):
        hours, rest = divmod(int(value), 3600)
        return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s"
    if key.endswith("_usd"):
        return f"${value:.4f}"
    return value


def print_show(shown: InstanceView, events: Sequence[InstanceEvent]) -> None:
    out = stdout_console()
    for key, value in shown.to_json().items():
        out.print(f"{key:>16}: {_shown_value(key, value)}", markup=False)
    out.print("events (UTC):")
    for e in events:
        when = _utc(e.at)
        if not e.to_status:
            change = ""
        elif e.from_status:
            change = f" {e.from_status} -> {e.to_status}"
        else:
            change = f" ({e.to_status})"
        if e.kind == "nodes":  # what was done to which pack says more than the status
            d = e.detail
            change = " " + " ".join(
                str(v) for v in (d.get("action"), d.get("pack"), d.get("result")) if v
            )
            change += f" at {str(d['commit'])[:12]}" if d.get("commit") else ""
        out.print(f"  {when}  {e.kind}{change}", markup=False)
