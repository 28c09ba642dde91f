"""What ComfyUI's log says about custom node packs at start: the import-times report and,
for a pack that failed, the lines explaining why.

ComfyUI 0.3.64 (`nodes.py`, reference §7) logs, per start:

    Traceback (most recent call last):          a pack that raised while being imported
      File ".../nodes.py", line 2131, in load_custom_node
      ...
    ImportError: ...

    Cannot import <path> module for custom nodes: <error>
    Skip <path> module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or ...

    Import times for custom nodes:
       0.0 seconds: <path>
       0.0 seconds (IMPORT FAILED): <path>

Lines are searched, not anchored, so a prefix added by a log collector does no harm. The
last import-times block of a log is the latest start; the failure lines of that start are
the ones between the previous block (or the top of the log) and that one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IMPORT_TIMES = "Import times for custom nodes:"
_TIME_LINE = re.compile(r"(\d+\.\d) seconds( \(IMPORT FAILED\))?: (.+?)\s*$")
_CANNOT = re.compile(r"Cannot import (.+?) module for custom nodes: ")
_SKIP = re.compile(r"Skip (.+?) module for custom nodes due to the lack of ")
_STARTUP = re.compile(r"Failed to execute startup-script: (.+?)/prestartup_script\.py / ")
_TRACEBACK = "Traceback (most recent call last):"
MAX_TRACEBACK = 80  # lines kept of one traceback


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImportLine:
    """One line of the import-times report."""

    seconds: float
    failed: bool
    path: str
    text: str  # the line as logged

    @property
    def name(self) -> str:
        """The custom_nodes entry: a folder name, or a file name with `.py`."""
        return basename(self.path)


@dataclass(frozen=True)
class StartupReport:
    """The latest start's import-times report, and the log lines of that start before it."""

    imports: tuple[ImportLine, ...]
    before: tuple[str, ...]

    def find(self, name: str) -> ImportLine | None:
        """The report's line for custom_nodes entry `name` (the last one, if several)."""
        found = [line for line in self.imports if line.name == name]
        return found[-1] if found else None

    def failure_lines(self, name: str) -> list[str]:
        """What the log says about why entry `name` failed: its prestartup failure, its
        `Skip ...` line, its traceback and `Cannot import ...` line, in log order."""
        out: list[str] = []
        lines = self.before
        for i, line in enumerate(lines):
            for pattern in (_STARTUP, _SKIP):
                match = pattern.search(line)
                if match and basename(match.group(1)) == name:
                    out.append(line)
            match = _CANNOT.search(line)
            if match and basename(match.group(1)) == name:
                out.extend(_traceback_before(lines, i, line[: match.start()].strip()))
                out.append(line)
        return out


def _traceback_before(lines: tuple[str, ...], end: int, prefix: str) -> list[str]:
    """The traceback ending just above line `end` (blank lines between skipped), or [].
    `prefix` is what a log collector puts before each line (a blank line is only that)."""
    stop = end
    while stop > 0 and lines[stop - 1].strip() in ("", prefix):
        stop -= 1
    start = stop
    while start > 0 and stop - start < MAX_TRACEBACK:
        start -= 1
        text = lines[start]
        if _TRACEBACK in text:
            return list(lines[start:stop])
        if _CANNOT.search(text) or _SKIP.search(text) or IMPORT_TIMES in text:
            break
    return []


def last_startup(log: str) -> StartupReport | None:
    """The latest import-times report in `log`; None when the log holds none."""
    lines = log.splitlines()
    heads = [i for i, line in enumerate(lines) if IMPORT_TIMES in line]
    if not heads:
        return None
    head = heads[-1]
    imports: list[ImportLine] = []
    for line in lines[head + 1 :]:
        match = _TIME_LINE.search(line)
        if match is None:
            break
        imports.append(
            ImportLine(float(match.group(1)), bool(match.group(2)), match.group(3), line.rstrip())
        )
    start = 0
    if len(heads) > 1:
        start = heads[-2] + 1
        while start < head and _TIME_LINE.search(lines[start]):
            start += 1
    return StartupReport(tuple(imports), tuple(lines[start:head]))
