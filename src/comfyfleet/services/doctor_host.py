"""The doctor's checks of the machine, over SSH: the custom-node import report of ComfyUI's
log, disk and memory headroom, GPU memory held by processes other than ComfyUI.

The log is read with `grep`, so only the lines the import report needs travel however long
the log has grown; `remote.comfylog` parses them. Each group gathers on its own: a failing
command makes its checks "skipped" with the reason, never the whole doctor fail.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from comfyfleet.control import doctor_host_rules as rules
from comfyfleet.control.doctor_host_rules import PackFailure, pack_failures
from comfyfleet.control.doctor_model import Check, skipped
from comfyfleet.errors import RemoteError
from comfyfleet.remote import manage
from comfyfleet.remote.comfylog import StartupReport, last_startup
from comfyfleet.remote.host_facts import HostFacts, grep_log, host_facts
from comfyfleet.services.doctor_access import SshSide

#: Every line `comfylog.last_startup` reads (grep -E): the report and the failure lines.
IMPORT_LINES = (
    "Import times for custom nodes:"
    "|[0-9]+\\.[0-9] seconds( \\(IMPORT FAILED\\))?: "
    "|Cannot import .* module for custom nodes: "
    "|Skip .* module for custom nodes due to the lack of"
)


async def import_report(ssh: SshSide) -> StartupReport | None:
    """The current log's latest import-times report (None: no report, or no log)."""
    if ssh.layout.log_file is None:
        return None
    lines = await grep_log(ssh.conn, ssh.layout.log_file, IMPORT_LINES)
    return None if lines is None else last_startup("\n".join(lines))


async def custom_nodes_check(ref: str, ssh: SshSide) -> tuple[Check, list[PackFailure]]:
    """The custom-nodes check, and the packs that failed (for the venv check)."""
    if ssh.layout.log_file is None:
        why = "no ComfyUI log file is known (give it with --log-file)"
        return skipped("custom-nodes", why), []
    try:
        report = await import_report(ssh)
    except RemoteError as exc:
        return skipped("custom-nodes", f"reading the log failed: {exc.message}"), []
    failed = pack_failures(report) if report is not None else []
    return rules.custom_nodes(ref, report), failed


async def machine_checks(ref: str, ssh: SshSide) -> tuple[list[Check], HostFacts | None]:
    """Disk, memory and GPU memory; also the host facts (the driver's CUDA) for torch."""
    layout = ssh.layout
    checks: list[Check] = []
    try:
        paths = [PurePosixPath("/"), layout.workspace, layout.comfy_dir / "models"]
        usage = await manage.disk_usage(ssh.conn, list(dict.fromkeys(paths)))
        checks.append(rules.disk(ref, usage))
    except RemoteError as exc:
        checks.append(skipped("disk", f"df failed: {exc.message}"))
    facts: HostFacts | None = None
    try:
        facts = await host_facts(ssh.conn)
        checks.append(rules.memory(ref, facts.memory))
    except RemoteError as exc:
        checks.append(skipped("memory", f"reading /proc/meminfo failed: {exc.message}"))
    try:
        checks.append(rules.gpu_memory(ref, await manage.gpu_status(ssh.conn, layout)))
    except RemoteError as exc:
        checks.append(skipped("gpu-memory", f"nvidia-smi failed: {exc.message}"))
    return checks, facts
