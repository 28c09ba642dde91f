"""Doctor rules for ComfyUI and its Python: reachability, versions, the venv, torch and CUDA,
accelerators that fight torch. Pure functions from observations to `Check`s.

`ref` in each rule is how the user named the target; fix texts quote it into commands.
Torch itself is never changed by a fix (its fixes are texts); what is fixed automatically is
installing into the venv what a node imports from a package another Python has (same
version, torch pinned), and removing an optional accelerator whose torch pin does not match.
"""

from __future__ import annotations

from collections.abc import Sequence

from comfyfleet.control.doctor_host_rules import PackFailure
from comfyfleet.control.doctor_model import TITLES, Check, Fix, FixKind, Status, cli
from comfyfleet.control.versions import compare, normalize_name, parse_requirement, release
from comfyfleet.models.comfy import SystemStats
from comfyfleet.remote.host_facts import DriverInfo
from comfyfleet.remote.python_env import ForeignModule, PipCheck, VenvFacts

CORE_TORCH = ("torch", "torchvision", "torchaudio")
#: Optional attention/kernel packages ComfyUI uses when present and works without.
OPTIONAL_ACCELERATORS = ("xformers", "flash-attn", "sageattention")
#: What the venv probe asks the versions of.
WATCHED = (*CORE_TORCH, "triton", *OPTIONAL_ACCELERATORS)
FRONTEND_PACKAGE = "comfyui-frontend-package"


def comfyui(ref: str, stats: SystemStats | None, error: str | None, can_restart: bool) -> Check:
    title = TITLES["comfyui"]
    if stats is None:
        fix = Fix(
            f"restart it: {cli(ref, 'restart')} (its log: {cli(ref, 'logs')})",
            FixKind.RESTART if can_restart else None,
        )
        return Check("comfyui", title, Status.FAIL, f"ComfyUI does not answer: {error}", (), fix)
    devices = tuple(f"device: {d.name}" for d in stats.devices)
    return Check(
        "comfyui",
        title,
        Status.OK,
        f"ComfyUI {stats.comfyui_version or '?'} answers (PyTorch {stats.pytorch_version or '?'},"
        f" Python {stats.python_version.split()[0] if stats.python_version else '?'})",
        devices,
    )


def frontend(ref: str, required: str | None, installed: str | None, known: bool) -> Check:
    """`known`: whether the installed version could be asked (False without SSH)."""
    title = TITLES["frontend"]
    if required is None:
        return Check("frontend", title, Status.OK, "the server names no required frontend")
    if installed is None:
        if not known:
            return Check("frontend", title, Status.SKIPPED, f"requires {required}; needs SSH")
        summary = f"{FRONTEND_PACKAGE} is not installed in the venv (requires {required})"
    elif compare(installed, required) < 0:
        summary = f"frontend {installed} is older than the {required} ComfyUI requires"
    else:
        return Check("frontend", title, Status.OK, f"frontend {installed} (requires {required})")
    fix = Fix(cli(ref, "pip", "--", "install", f"{FRONTEND_PACKAGE}=={required}"))
    return Check("frontend", title, Status.WARN, summary, (), fix)


def venv_packages(
    ref: str,
    venv: VenvFacts,
    failures: Sequence[PackFailure],
    foreign: Sequence[ForeignModule],
) -> Check:
    """Packs failing on a module the venv lacks while another Python has it (a global pip)."""
    title = TITLES["venv-packages"]
    elsewhere = {f.module: f for f in foreign}
    evidence: list[str] = []
    installs: list[str] = []
    restart_only: list[str] = []
    for pack in failures:
        module = pack.missing_module
        if module is None:
            continue
        if venv.modules.get(module):
            evidence.append(
                f"{pack.name}: No module named '{module}' at start; the venv has it now"
            )
            restart_only.append(module)
            continue
        found = elsewhere.get(module)
        if found is None:
            continue
        dist = _distribution(found)
        where = f"{found.python} has it" + (f" ({found.origin})" if found.origin else "")
        if dist is None:
            evidence.append(f"{pack.name}: No module named '{module}'; {where}")
            continue
        name, version = dist
        evidence.append(
            f"{pack.name}: No module named '{module}'; {where}: {name} {version or '?'}"
        )
        requirement = f"{name}=={version}" if version else name
        if requirement not in installs:
            installs.append(requirement)
    if installs:
        fix = Fix(
            f"install into the venv with the venv's pip, then restart: "
            f"{cli(ref, 'pip', '--', 'install', *installs)} && {cli(ref, 'restart')}",
            FixKind.VENV_INSTALL,
            tuple(installs),
            restart=True,
        )
        summary = (
            f"{', '.join(installs)}: installed for another Python, missing from the venv "
            f"({venv.prefix})"
        )
        return Check("venv-packages", title, Status.FAIL, summary, tuple(evidence), fix)
    if restart_only:
        fix = Fix(f"restart ComfyUI: {cli(ref, 'restart')}", FixKind.RESTART, restart=True)
        summary = f"installed since ComfyUI started: {', '.join(restart_only)}; restart it"
        return Check("venv-packages", title, Status.WARN, summary, tuple(evidence), fix)
    summary = f"no node lacks a package another Python has (venv {venv.prefix})"
    return Check("venv-packages", title, Status.OK, summary, tuple(evidence))


def _distribution(found: ForeignModule) -> tuple[str, str | None] | None:
    """The distribution providing the module (one that names it after the module first)."""
    if not found.distributions:
        return None
    wanted = normalize_name(found.module)
    for name, version in found.distributions:
        if normalize_name(name) == wanted:
            return name, version
    return found.distributions[0]


def pip_check(ref: str, result: PipCheck) -> Check:
    title = TITLES["pip-check"]
    if result.ok:
        return Check("pip-check", title, Status.OK, "no broken requirements in the venv")
    fix = Fix(
        f"resolve by hand, never by letting pip replace torch; see {cli(ref, 'pip', '--', 'check')}"
    )
    summary = f"{len(result.problems)} broken requirement(s) in the venv"
    return Check("pip-check", title, Status.WARN, summary, result.problems, fix)


def torch_cuda(
    ref: str, venv: VenvFacts, driver: DriverInfo | None, cuda_max_good: float | None
) -> Check:
    """torch's CUDA build fits the driver (nvidia-smi and Vast's cuda_max_good); torch sees it."""
    title = TITLES["torch-cuda"]
    evidence = _driver_evidence(driver, cuda_max_good)
    torch = venv.torch
    never = "comfyfleet never changes torch by itself"
    if torch is None:
        summary = f"torch does not import in the venv: {venv.torch_error or 'not installed'}"
        fix = Fix(f"reinstall the image's CUDA torch in the venv ({never})")
        return Check("torch-cuda", title, Status.FAIL, summary, evidence, fix)
    if torch.cuda is None:
        summary = f"torch {torch.version} is a CPU build: ComfyUI cannot use the GPU"
        fix = Fix(
            "put back a CUDA build of the same version, e.g. "
            f"{cli(ref, 'pip', '--', 'install', '--no-deps', _cuda_build(torch.version))} "
            f"--index-url https://download.pytorch.org/whl/cu128 ({never})"
        )
        return Check("torch-cuda", title, Status.FAIL, summary, evidence, fix)
    limits = [v for v in (driver.cuda_version if driver else None, cuda_max_good) if v]
    limit = min((str(v) for v in limits), key=release, default=None)
    if limit is not None and release(torch.cuda) > release(limit):
        summary = (
            f"torch {torch.version} is built for CUDA {torch.cuda}; the driver supports {limit}"
        )
        fix = Fix(
            f"rent a host whose driver supports CUDA {torch.cuda} ({cli(ref, 'destroy')}, then "
            f"comfyfleet up 'cuda_max_good>={torch.cuda}'), or install a torch built for CUDA "
            f"<= {limit} ({never})"
        )
        return Check("torch-cuda", title, Status.FAIL, summary, evidence, fix)
    if not torch.available:
        summary = f"torch {torch.version} (CUDA {torch.cuda}) does not see a GPU"
        fix = Fix(f"check the GPU: {cli(ref, 'gpu')}; a stopped/started host may need a restart")
        return Check("torch-cuda", title, Status.FAIL, summary, evidence, fix)
    summary = f"torch {torch.version} (CUDA {torch.cuda}) sees {torch.device or 'the GPU'}"
    return Check("torch-cuda", title, Status.OK, summary, evidence)


def _cuda_build(version: str) -> str:
    return f"torch=={version.split('+')[0]}+cu128"


def _driver_evidence(driver: DriverInfo | None, cuda_max_good: float | None) -> tuple[str, ...]:
    out: list[str] = []
    if driver is not None:
        out.append(
            f"nvidia-smi: driver {driver.driver_version or '?'}, CUDA {driver.cuda_version or '?'}"
        )
    else:
        out.append("nvidia-smi: not available")
    if cuda_max_good is not None:
        out.append(f"Vast: cuda_max_good {cuda_max_good:g}")
    return tuple(out)


def accelerators(ref: str, venv: VenvFacts) -> Check:
    """Optional accelerators whose requirements pin another torch than the installed one."""
    title = TITLES["accelerators"]
    conflicts: list[str] = []
    remove: list[str] = []
    present: list[str] = []
    for name in OPTIONAL_ACCELERATORS:
        version = venv.versions.get(name)
        if version is None:
            continue
        present.append(f"{name} {version}")
        for line in venv.requires.get(name) or ():
            requirement = parse_requirement(line)
            if requirement is None or requirement.name not in CORE_TORCH:
                continue
            installed = venv.versions.get(requirement.name)
            if installed is not None and not requirement.allows(installed):
                conflicts.append(
                    f"{name} {version} requires {requirement.text.split(';')[0].strip()}, "
                    f"but {requirement.name} {installed} is installed"
                )
                if name not in remove:
                    remove.append(name)
    if remove:
        fix = Fix(
            f"remove the optional {', '.join(remove)} (ComfyUI falls back to PyTorch "
            f"attention; torch stays as it is): {cli(ref, 'pip', '--', 'uninstall', '-y', *remove)}"
            f" && {cli(ref, 'restart')}",
            FixKind.VENV_UNINSTALL,
            tuple(remove),
            restart=True,
        )
        summary = f"{', '.join(remove)} built for another torch"
        return Check("accelerators", title, Status.FAIL, summary, tuple(conflicts), fix)
    torch = venv.versions.get("torch") or "?"
    summary = (
        f"{', '.join(present)}: built for the installed torch {torch}"
        if present
        else "no optional accelerator installed"
    )
    return Check("accelerators", title, Status.OK, summary)
