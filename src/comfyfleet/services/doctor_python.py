"""The doctor's checks of ComfyUI's Python, over SSH, and the venv fixes it may apply.

One probe of the venv (versions of torch and friends, accelerators, the frontend package;
whether the modules failed packs miss import; torch's CUDA), one lookup of those modules in
the instance's other Pythons, one `pip check`. Fixes always use the venv's pip through the
torch guard (`services.torch_guard`): installs are planned, refused if they would move a
protected package, run with those pinned and put back if they moved anyway; uninstalls
only ever remove an optional accelerator, and torch & co are compared before and after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from comfyfleet.control import doctor_rules as rules
from comfyfleet.control.doctor_host_rules import PackFailure
from comfyfleet.control.doctor_model import Check, skipped
from comfyfleet.errors import RemoteError
from comfyfleet.models.vast import Instance
from comfyfleet.remote.commands import run
from comfyfleet.remote.host_facts import HostFacts
from comfyfleet.remote.manage import pip_command
from comfyfleet.remote.pipreport import canonical
from comfyfleet.remote.python_env import VenvFacts, other_pythons_with, pip_check, venv_facts
from comfyfleet.remote.tempfiles import temp_file
from comfyfleet.services.doctor_access import SshSide
from comfyfleet.services.torch_guard import TorchGuard

WATCHED = (*rules.WATCHED, rules.FRONTEND_PACKAGE)
PYTHON_CHECKS = ("venv-packages", "pip-check", "accelerators")


async def python_checks(
    ref: str,
    ssh: SshSide,
    failed: Sequence[PackFailure],
    required_frontend: str | None,
) -> tuple[list[Check], VenvFacts | None]:
    """frontend, venv-packages, pip-check and accelerators, and the venv's facts (None when
    its Python did not answer) for the torch check."""
    modules = sorted({p.missing_module for p in failed if p.missing_module})
    pip = asyncio.create_task(_pip_check(ref, ssh))
    try:
        venv = await venv_facts(ssh.conn, ssh.layout, WATCHED, modules)
    except RemoteError as exc:
        pip.cancel()
        why = f"the venv's Python did not answer: {exc.message}"
        frontend = rules.frontend(ref, required_frontend, None, known=False)
        return [frontend, *(skipped(name, why) for name in PYTHON_CHECKS)], None
    installed = venv.versions.get(rules.FRONTEND_PACKAGE)
    checks = [rules.frontend(ref, required_frontend, installed, known=True)]
    lacking = [m for m in modules if not venv.modules.get(m)]
    try:
        foreign = await other_pythons_with(ssh.conn, venv.prefix, lacking)
        checks.append(rules.venv_packages(ref, venv, failed, foreign))
    except RemoteError as exc:
        checks.append(skipped("venv-packages", f"looking at other Pythons failed: {exc.message}"))
    checks.append(await pip)
    checks.append(rules.accelerators(ref, venv))
    return checks, venv


async def _pip_check(ref: str, ssh: SshSide) -> Check:
    try:
        return rules.pip_check(ref, await pip_check(ssh.conn, ssh.layout))
    except RemoteError as exc:
        return skipped("pip-check", exc.message)


def torch_check(
    ref: str, venv: VenvFacts | None, host: HostFacts | None, instance: Instance | None
) -> Check:
    if venv is None:
        return skipped("torch-cuda", "the venv's Python did not answer")
    cuda_max_good = instance.cuda_max_good if instance is not None else None
    return rules.torch_cuda(ref, venv, host.driver if host else None, cuda_max_good)


async def guarded_install(ssh: SshSide, requirements: Sequence[str]) -> str:
    """Install `requirements` into the venv through the torch guard (plan refused if it
    would move a protected package; installed with them pinned; put back if moved anyway)."""
    guard = TorchGuard(ssh.conn, ssh.layout)
    text = "".join(f"{r}\n" for r in requirements)
    async with temp_file(ssh.conn, text, suffix=".txt") as path:
        result = await guard.install_requirements(
            path, path.parent, label=f"the doctor's fix ({', '.join(requirements)})"
        )
    pinned = ", ".join(f"{n}=={v}" for n, v in result.protected_versions().items())
    done = ", ".join(result.installed) or "nothing new (already satisfied)"
    return f"installed {done} into the venv (protected, unchanged: {pinned or 'none'})"


async def remove_optional(ssh: SshSide, names: Sequence[str]) -> str:
    """Uninstall optional accelerators from the venv; anything else the protected set holds
    (torch first) is compared before and after and put back if it moved."""
    refused = [n for n in names if n not in rules.OPTIONAL_ACCELERATORS]
    if refused:
        raise RemoteError(f"refusing to uninstall {', '.join(refused)}: not an optional package")
    guard = TorchGuard(ssh.conn, ssh.layout)
    gone = {canonical(n) for n in names}
    before = await guard.snapshot()
    done = await run(ssh.conn, pip_command(ssh.layout, ["uninstall", "-y", *names]))
    moved = await guard.verify({k: v for k, v in before.items() if k not in gone})
    if moved:
        shown = "; ".join(c.describe() for c in moved)
        raise RemoteError(f"removing {', '.join(names)} also moved {shown}: put back")
    if done.exit_code != 0:
        raise RemoteError(f"pip uninstall {' '.join(names)} failed: {done.stderr[-300:].strip()}")
    return f"removed {', '.join(names)} from the venv (torch untouched)"
