"""The torch guard: requirements go into the ComfyUI venv only if torch & co stay as they are.

Three layers, each run with the venv's own pip (`manage.pip_command`, never a global one):

1. Plan: `pip install --dry-run --report - -r FILE` says what WOULD be installed. A protected
   package among it (installed, upgraded, downgraded: `control.protected`) raises
   `ProtectedChangeRefused` naming the requirement lines and the versions, before anything
   is installed.
2. Install under a constraints file pinning every installed protected package to its
   version (`-c`). The file is written on the instance from the command's standard input
   (never from argv) into a private temporary file, removed when pip ends.
3. Compare the protected set (`pip list`) before and after, whatever happened (even a
   dry run builds local requirements, running their build code). If it changed anyway, the
   old versions are reinstalled (`--no-deps`, same index) and new protected packages
   removed, then `ProtectedRolledBack` is raised: the caller removes what it installed.

The layers are public one by one (`snapshot`, `plan`, `install`, `verify`), so other steps
(`prepare`, `env apply`) can run their own pip work inside the same before/after check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from comfyfleet.control.protected import (
    DEFAULT_PROTECTED,
    Change,
    Installed,
    ProtectedSet,
    changes,
    constraints,
    refusals,
    restore_plan,
)
from comfyfleet.errors import (
    ComfyfleetError,
    NodePackError,
    ProtectedChangeRefused,
    ProtectedRolledBack,
    RemoteTimeout,
    RequirementsFailed,
)
from comfyfleet.remote.commands import RemoteCommand, run, stream
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.manage import pip_command
from comfyfleet.remote.pipreport import Planned, parse_pip_list, parse_report, requirement_lines
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.util.lines import Line, quiet

PIP_FLAGS = ("--disable-pip-version-check", "--no-input")
OUTPUT_TAIL = 40  # lines of pip's output kept for an error message

# "$@" is pip's argv: run it with `-c <file>`, the file holding this script's stdin.
_WITH_CONSTRAINTS = r"""
f=$(mktemp "${TMPDIR:-/tmp}/comfyfleet-constraints.XXXXXX") || exit 1
trap 'rm -f "$f"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
cat >"$f" || exit 1
"$@" -c "$f"
"""


@dataclass(frozen=True)
class GuardResult:
    """What a guarded install did: the distributions pip installed, the protected set kept."""

    installed: tuple[str, ...]  # `name==version`, from pip's plan
    protected: Installed  # the protected packages, untouched

    def protected_versions(self) -> dict[str, str]:
        return dict(self.protected.values())


class TorchGuard:
    """The guard for one instance's venv, over an open SSH connection."""

    def __init__(
        self,
        conn: SshConnection,
        layout: InstanceLayout,
        protected: ProtectedSet | None = None,
        *,
        on_line: Line = quiet,
        pip_timeout: float = 1800.0,
    ) -> None:
        self.conn = conn
        self.layout = layout
        self.protected = protected or ProtectedSet()
        self.on_line = on_line
        self.pip_timeout = pip_timeout

    # --- layers ----------------------------------------------------------------------------

    async def installed(self) -> Installed:
        """Every distribution the venv sees (`pip list --format=json`)."""
        cmd = pip_command(self.layout, ["list", "--format=json", *PIP_FLAGS])
        done = await run(self.conn, cmd, timeout=self.pip_timeout, check=True)
        return parse_pip_list(done.stdout)

    async def snapshot(self) -> Installed:
        """The venv's protected packages now."""
        return self.protected.pick(await self.installed())

    async def plan(self, requirements: PurePosixPath, cwd: PurePosixPath) -> list[Planned]:
        """Layer 1: what `pip install -r requirements` would install (nothing is installed)."""
        args = ["install", "--dry-run", "--quiet", "--report", "-", *PIP_FLAGS]
        cmd = pip_command(self.layout, [*args, "-r", str(requirements)]).in_dir(cwd)
        done = await run(self.conn, cmd, timeout=self.pip_timeout)
        if done.exit_code != 0:
            err = done.stderr
            if "no such option: --report" in err or "no such option: --dry-run" in err:
                raise RequirementsFailed(
                    f"the venv's pip on {self.conn.target.describe()} cannot plan an install "
                    "(pip 22.2 or newer is needed for --dry-run --report)",
                    hint="upgrade it first: comfyfleet pip ID -- install -U pip",
                )
            raise RequirementsFailed(
                f"pip cannot resolve {requirements} on {self.conn.target.describe()}; "
                "nothing was installed" + _quoted(err.splitlines()[-OUTPUT_TAIL:]),
                hint="a requirement names a version or package the index does not have",
            )
        return parse_report(done.stdout)

    async def install(
        self, requirements: PurePosixPath, cwd: PurePosixPath, pins: Installed
    ) -> None:
        """Layer 2: `pip install -r requirements` under constraints pinning `pins`."""
        pip = pip_command(self.layout, ["install", *PIP_FLAGS, "-r", str(requirements)])
        cmd = RemoteCommand.of("sh", "-c", _WITH_CONSTRAINTS, "comfyfleet-pip", *pip.argv)
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL)

        def line(text: str) -> None:
            text = text.rstrip("\r\n")
            tail.append(text)
            self.on_line(text)

        try:
            code = await asyncio.wait_for(
                stream(self.conn, cmd.in_dir(cwd), line, line, stdin=constraints(pins)),
                self.pip_timeout,
            )
        except TimeoutError as exc:
            raise RemoteTimeout(
                f"pip did not finish within {self.pip_timeout:g} s on "
                f"{self.conn.target.describe()}",
                hint="raise [nodes] pip_timeout, or look at the instance's network",
            ) from exc
        if code != 0:
            raise RequirementsFailed(
                f"pip failed (exit {code}) installing {requirements} on "
                f"{self.conn.target.describe()}" + _quoted(list(tail)),
                hint="read pip's message above; packages pip installed before failing stay",
            )

    async def verify(self, before: Installed) -> list[Change]:
        """Layer 3: compare with `before`; put back what changed. Returns what had changed
        (empty: nothing did). NodePackError when the old state cannot be restored."""
        found = changes(before, await self.snapshot())
        if not found:
            return []
        for change in found:
            self.on_line(f"PROTECTED PACKAGE CHANGED: {change.describe()}; putting it back")
        restore = restore_plan(found)
        if restore.reinstall:
            args = ["install", "--no-deps", *PIP_FLAGS, *restore.reinstall]
            await self._pip(args)
        if restore.uninstall:
            await self._pip(["uninstall", "-y", *restore.uninstall])
        left = changes(before, await self.snapshot())
        if left:
            fix = " ".join(restore.reinstall) or " ".join(restore.uninstall)
            raise NodePackError(
                f"protected packages on {self.conn.target.describe()} changed and could not "
                "be restored: " + "; ".join(c.describe() for c in left),
                hint=f"restore them by hand: comfyfleet pip ID -- install --no-deps {fix}",
            )
        return found

    async def _pip(self, args: Sequence[str]) -> None:
        cmd = pip_command(self.layout, list(args))
        code = await stream(self.conn, cmd, self.on_line, self.on_line)
        if code != 0:
            self.on_line(f"pip {' '.join(args[:1])} exited with {code}")

    # --- all three -------------------------------------------------------------------------

    async def install_requirements(
        self, requirements: PurePosixPath, cwd: PurePosixPath, *, label: str
    ) -> GuardResult:
        """Install `requirements` (a file on the instance) through the three layers.

        `label` names what is installed in messages ("pack 'x'"). Raises
        ProtectedChangeRefused (nothing installed), RequirementsFailed, ProtectedRolledBack.
        """
        read = RemoteCommand.of("cat", "--", requirements)
        lines = requirement_lines((await run(self.conn, read, check=True)).stdout)
        everything = await self.installed()
        before = self.protected.pick(everything)
        failure: ComfyfleetError | None = None
        wanted: tuple[str, ...] = ()
        try:
            wanted = await self._plan_and_install(requirements, cwd, lines, everything, label)
        except ComfyfleetError as exc:
            failure = exc
        except asyncio.CancelledError:
            with contextlib.suppress(ComfyfleetError):
                await asyncio.shield(self.verify(before))
            raise
        # Even a refused plan is checked: building a local requirement to read its metadata
        # runs the pack's own build code, which may have changed the venv already.
        rolled_back = await self.verify(before)
        if rolled_back:
            raise ProtectedRolledBack(
                f"ROLLED BACK: installing the requirements of {label} changed protected "
                f"packages on {self.conn.target.describe()} despite the guard: "
                + "; ".join(c.describe() for c in rolled_back)
                + "; the old versions were reinstalled",
                hint="something in the pack's requirements changes packages outside pip's "
                "resolver (a build script calling pip?); do not use this version of the pack",
            ) from failure
        if failure is not None:
            raise failure
        return GuardResult(wanted, before)

    async def _plan_and_install(
        self,
        requirements: PurePosixPath,
        cwd: PurePosixPath,
        lines: Sequence[str],
        everything: Installed,
        label: str,
    ) -> tuple[str, ...]:
        """Layers 1 and 2; returns what pip installed (`name==version`)."""
        self.on_line(f"planning the requirements of {label} (pip --dry-run)")
        planned = await self.plan(requirements, cwd)
        refused = refusals(planned, everything, self.protected, lines)
        if refused:
            shown = [r.describe() for r in refused]
            raise ProtectedChangeRefused(
                f"refused: the requirements of {label} would change protected packages of "
                f"the ComfyUI venv on {self.conn.target.describe()}:"
                + "".join(f"\n  {s}" for s in shown)
                + "\nnothing was installed",
                changes=shown,
                hint="a node pack never changes "
                + ", ".join(DEFAULT_PROTECTED)
                + " (or [nodes] protected); use a version of the pack that works with the "
                "instance's torch (--ref)",
            )
        if not planned:
            self.on_line("every requirement is already satisfied")
            return ()
        wanted = tuple(f"{p.name}=={p.version}" for p in planned)
        self.on_line("installing " + " ".join(wanted) + " (protected packages pinned)")
        await self.install(requirements, cwd, self.protected.pick(everything))
        return wanted


def _quoted(lines: Sequence[str]) -> str:
    return "".join(f"\n  | {line}" for line in lines if line.strip())
