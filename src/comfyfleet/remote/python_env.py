"""The Pythons of an instance: facts about the ComfyUI venv, modules other Pythons have, and
`pip check` — each one SSH round trip, parsed into typed values.

Probes are fixed Python texts run with `python -c`; what they look for goes in as arguments
(JSON), never pasted into the text. Each prints one marked JSON line, so whatever else an
import prints (torch warnings) does not matter. "Other Pythons" are the ones a careless
`pip install` reaches: `python3`/`python` on a non-interactive PATH, `/usr/bin/python3`,
`/usr/local/bin/python3` and `/opt/conda/bin/python`, minus the venv itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from comfyfleet.errors import LayoutNotDetected, RemoteError
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.ssh import SshConnection

MARK = "@@comfyfleet-json@@"
PROBE_TIMEOUT = 180.0  # importing torch on a cold disk can take a while

_VENV_FACTS = r"""
import importlib.metadata as md, importlib.util, json, os, sys
names, modules, want_torch = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "1"
def version(n):
    try:
        return md.version(n)
    except Exception:
        return None
def requires(n):
    try:
        return md.requires(n) or []
    except Exception:
        return None
def found(m):
    try:
        return importlib.util.find_spec(m) is not None
    except Exception:
        return False
out = {"executable": sys.executable, "prefix": os.path.realpath(sys.prefix),
       "python": sys.version.split()[0], "versions": {n: version(n) for n in names},
       "requires": {n: requires(n) for n in names}, "modules": {m: found(m) for m in modules}}
if want_torch:
    try:
        import torch
        t = {"version": str(torch.__version__), "cuda": getattr(torch.version, "cuda", None),
             "available": bool(torch.cuda.is_available()), "device": None}
        if t["available"]:
            t["device"] = str(torch.cuda.get_device_name(0))
        out["torch"] = t
    except BaseException as exc:
        out["torch_error"] = type(exc).__name__ + ": " + str(exc)
print("MARK" + json.dumps(out))
""".replace("MARK", MARK)

_LOOKUP = r"""
import json, os, sys
try:
    import importlib.metadata as md, importlib.util
except ImportError:
    sys.exit(0)
try:
    dists = md.packages_distributions()
except Exception:
    dists = {}
found = {}
for m in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(m)
    except Exception:
        spec = None
    if spec is None:
        continue
    where = spec.origin or next(iter(spec.submodule_search_locations or []), None)
    pairs = []
    for n in dists.get(m, []):
        try:
            pairs.append([n, md.version(n)])
        except Exception:
            pairs.append([n, None])
    found[m] = {"origin": where, "dists": pairs}
print("MARK" + json.dumps({"executable": sys.executable,
                           "prefix": os.path.realpath(sys.prefix), "found": found}))
""".replace("MARK", MARK)

# $1: the lookup script; then the modules. Each candidate Python runs it once.
_OTHER_PYTHONS = r"""
lookup=$1; shift
seen=
for p in "$(command -v python3 2>/dev/null)" "$(command -v python 2>/dev/null)" \
    /usr/bin/python3 /usr/local/bin/python3 /opt/conda/bin/python; do
  [ -n "$p" ] && [ -x "$p" ] || continue
  case " $seen " in *" $p "*) continue ;; esac
  seen="$seen $p"
  "$p" -c "$lookup" "$@" 2>/dev/null
done
exit 0
"""


@dataclass(frozen=True)
class TorchFacts:
    version: str
    cuda: str | None  # torch.version.cuda; None for a CPU build
    available: bool  # torch.cuda.is_available()
    device: str | None


@dataclass(frozen=True)
class VenvFacts:
    """What the ComfyUI venv's Python reports about itself."""

    executable: str
    prefix: str  # real path of sys.prefix
    python_version: str
    versions: Mapping[str, str | None]  # distribution -> version (None: not installed)
    requires: Mapping[str, tuple[str, ...] | None]  # distribution -> Requires-Dist lines
    modules: Mapping[str, bool]  # top-level module -> importable
    torch: TorchFacts | None = None
    torch_error: str | None = None


@dataclass(frozen=True)
class ForeignModule:
    """A module another Python of the instance has: where, and from which distribution."""

    module: str
    python: str
    origin: str | None
    distributions: tuple[tuple[str, str | None], ...]  # (name, version)


@dataclass(frozen=True)
class PipCheck:
    ok: bool
    problems: tuple[str, ...]  # pip's lines ("x 1.0 has requirement torch==2.9.0, but ...")


def _marked(stdout: str, what: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        if line.startswith(MARK):
            try:
                value = json.loads(line[len(MARK) :])
            except ValueError as exc:
                raise RemoteError(f"{what}: unreadable answer: {exc}") from exc
            if isinstance(value, dict):
                out.append(value)
    return out


def _python(layout: InstanceLayout) -> PurePosixPath:
    if layout.python is None:
        raise LayoutNotDetected(
            "no ComfyUI venv was found on the instance",
            hint="give the venv with --venv (or remote.venv in the config)",
        )
    return layout.python


async def venv_facts(
    conn: SshConnection,
    layout: InstanceLayout,
    distributions: Sequence[str],
    modules: Sequence[str] = (),
    *,
    with_torch: bool = True,
) -> VenvFacts:
    """Versions and requirements of `distributions`, whether `modules` import, and torch."""
    cmd = RemoteCommand.of(
        _python(layout),
        "-c",
        _VENV_FACTS,
        json.dumps(list(distributions)),
        json.dumps(list(modules)),
        "1" if with_torch else "0",
    )
    done = await run(conn, cmd, timeout=PROBE_TIMEOUT)
    found = _marked(done.stdout, "the venv probe")
    if not found:
        done.check()
        raise RemoteError(
            f"the venv's Python ({layout.python}) printed no facts: {done.stderr[-300:].strip()}"
        )
    data = found[-1]
    torch = data.get("torch")
    return VenvFacts(
        executable=str(data.get("executable", "")),
        prefix=str(data.get("prefix", "")),
        python_version=str(data.get("python", "")),
        versions={str(k): (None if v is None else str(v)) for k, v in data["versions"].items()},
        requires={
            str(k): (None if v is None else tuple(str(r) for r in v))
            for k, v in data["requires"].items()
        },
        modules={str(k): bool(v) for k, v in data["modules"].items()},
        torch=None
        if not isinstance(torch, dict)
        else TorchFacts(
            version=str(torch["version"]),
            cuda=None if torch.get("cuda") is None else str(torch["cuda"]),
            available=bool(torch.get("available")),
            device=None if torch.get("device") is None else str(torch["device"]),
        ),
        torch_error=data.get("torch_error"),
    )


async def other_pythons_with(
    conn: SshConnection, venv_prefix: str, modules: Sequence[str]
) -> list[ForeignModule]:
    """Which of `modules` the instance's other Pythons (not the venv) can import."""
    if not modules:
        return []
    cmd = RemoteCommand.of("sh", "-c", _OTHER_PYTHONS, "comfyfleet-pythons", _LOOKUP, *modules)
    done = await run(conn, cmd, timeout=PROBE_TIMEOUT)
    out: list[ForeignModule] = []
    seen: set[str] = set()
    for data in _marked(done.stdout, "the Python lookup"):
        prefix = str(data.get("prefix", ""))
        if prefix == venv_prefix or prefix in seen:
            continue
        seen.add(prefix)
        for module, info in (data.get("found") or {}).items():
            out.append(
                ForeignModule(
                    module=str(module),
                    python=str(data.get("executable", "")),
                    origin=None if info.get("origin") is None else str(info["origin"]),
                    distributions=tuple(
                        (str(n), None if v is None else str(v)) for n, v in info.get("dists", [])
                    ),
                )
            )
    return out


# Runs `pip check` with the venv's python and says, for each broken requirement, whether the
# distribution that has it is installed in the venv itself: a venv made with
# --system-site-packages also sees the base interpreter's packages, whose conflicts are not the
# venv's to fix (and pip there is not ours to run).
PIP_CHECK_SCRIPT = r"""
import importlib.metadata as md, json, os, subprocess, sys
done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
prefix = os.path.realpath(sys.prefix)
lines = []
for line in done.stdout.splitlines():
    line = line.strip()
    if not line or "No broken" in line:
        continue
    try:
        where = os.path.realpath(str(md.distribution(line.split(" ", 1)[0]).locate_file("")))
    except Exception:
        where = ""
    lines.append([line, where == prefix or where.startswith(prefix + os.sep)])
print(json.dumps({"code": done.returncode, "lines": lines, "stderr": done.stderr[-2000:]}))
"""


async def pip_check(conn: SshConnection, layout: InstanceLayout) -> PipCheck:
    """`<venv python> -m pip check`: the broken requirements of packages in the venv."""
    done = await run(conn, RemoteCommand.of(_python(layout), "-c", PIP_CHECK_SCRIPT), timeout=120)
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise RemoteError(
            f"pip check did not run in the venv ({layout.venv}): {done.stderr[-300:].strip()}"
        ) from exc
    if "No module named pip" in str(data.get("stderr", "")):
        raise RemoteError(f"the venv ({layout.venv}) has no pip", hint="python -m ensurepip")
    mine = tuple(str(line) for line, in_venv in data.get("lines", []) if in_venv)
    return PipCheck(not mine, mine)
