"""The custom_nodes folder of an instance: what it holds (one round trip), moving and removing.

`list_entries` runs a fixed sh script with the folder as its only argument and reads back
NUL-terminated `name=value` records (values need no escaping: paths and git output hold no
NUL). Every entry ComfyUI would look at is reported (folders, files, symlinks, `.disabled`
ones), each with its git origin, commit and whether tracked files were changed (untracked
files such as `__pycache__` do not count as a change).

Removal and moves take one plain entry name (`git.check_entry_name`): never a path, so
nothing outside the folder can be named, and a symlink is removed itself, not its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from comfyfleet.errors import RemoteError
from comfyfleet.remote.commands import RemoteCommand, run
from comfyfleet.remote.git import GIT_ENV, check_entry_name
from comfyfleet.remote.ssh import SshConnection

EntryKind = Literal["dir", "file", "other"]

# $1: the custom_nodes folder.
_LIST = r"""
r() { printf '%s=%s\0' "$1" "$2"; }
cd -- "$1" 2>/dev/null || { r missing yes; exit 0; }
for e in * .[!.]* ..?*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  [ "$e" = __pycache__ ] && continue
  r entry "$e"
  [ -L "$e" ] && r link "$(readlink -- "$e")"
  if [ -d "$e" ]; then r kind dir; elif [ -f "$e" ]; then r kind file; else r kind other; fi
  [ -f "$e/requirements.txt" ] && r requirements yes
  [ -f "$e/install.py" ] && r install_py yes
  if [ -d "$e" ] && [ -e "$e/.git" ]; then
    r commit "$(git -C "$e" rev-parse HEAD 2>/dev/null)"
    r url "$(git -C "$e" config --get remote.origin.url 2>/dev/null)"
    if out=$(git -C "$e" status --porcelain --untracked-files=no 2>/dev/null); then
      if [ -n "$out" ]; then r dirty yes; else r dirty no; fi
    fi
  fi
done
exit 0
"""

# $1: the folder, $2: the entry. Refuses anything but an existing direct child.
_REMOVE = r"""
cd -- "$1" || exit 3
[ -e "$2" ] || [ -L "$2" ] || { echo "no such entry: $2" >&2; exit 4; }
rm -rf -- "./$2"
"""

# $1: the folder, $2: the staged folder, $3: the entry name it gets.
_MOVE_IN = r"""
cd -- "$1" || exit 3
if [ -e "$3" ] || [ -L "$3" ]; then echo "already exists: $3" >&2; exit 5; fi
mv -- "$2" "./$3"
"""


@dataclass(frozen=True)
class Entry:
    """One entry of custom_nodes as found on the instance."""

    name: str
    kind: EntryKind
    link: str | None = None  # where a symlink points
    commit: str | None = None  # git HEAD, for a git checkout
    url: str | None = None  # its origin remote
    dirty: bool | None = None  # tracked files changed; None: not a git checkout
    has_requirements: bool = False
    has_install_py: bool = False

    @property
    def disabled(self) -> bool:
        return self.name.endswith(".disabled")

    @property
    def loadable(self) -> bool:
        """Whether ComfyUI imports it (folders and .py files not marked .disabled)."""
        if self.disabled:
            return False
        return self.kind == "dir" or (self.kind == "file" and self.name.endswith(".py"))

    @property
    def module(self) -> str:
        """ComfyUI's `python_module` for the entry's classes: `custom_nodes.<name>`."""
        stem = self.name[:-3] if self.kind == "file" and self.name.endswith(".py") else self.name
        return f"custom_nodes.{stem}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "link": self.link,
            "disabled": self.disabled,
            "url": self.url,
            "commit": self.commit,
            "dirty": self.dirty,
            "requirements": self.has_requirements,
            "install_py": self.has_install_py,
        }


def parse_entries(output: str) -> list[Entry] | None:
    """The listing script's records as entries; None when the folder does not exist."""
    entries: list[Entry] = []
    current: dict[str, str] | None = None
    found: list[dict[str, str]] = []
    for record in output.split("\0"):
        key, sep, value = record.lstrip("\n").partition("=")
        if not sep:
            continue
        if key == "missing":
            return None
        if key == "entry":
            current = {"name": value}
            found.append(current)
        elif current is not None:
            current[key] = value
    for f in found:
        entries.append(
            Entry(
                name=f["name"],
                kind=_kind(f.get("kind", "")),
                link=f.get("link"),
                commit=f.get("commit") or None,
                url=f.get("url") or None,
                dirty={"yes": True, "no": False}.get(f.get("dirty", "")),
                has_requirements=f.get("requirements") == "yes",
                has_install_py=f.get("install_py") == "yes",
            )
        )
    return sorted(entries, key=lambda e: e.name.lower())


def _kind(value: str) -> EntryKind:
    if value == "dir":
        return "dir"
    return "file" if value == "file" else "other"


async def list_entries(conn: SshConnection, folder: PurePosixPath) -> list[Entry] | None:
    """Every entry of `folder` (sorted by name); None when the folder does not exist."""
    cmd = RemoteCommand.of("sh", "-c", _LIST, "comfyfleet-custom-nodes", folder).with_env(GIT_ENV)
    done = (await run(conn, cmd)).check()
    return parse_entries(done.stdout)


async def remove_entry(conn: SshConnection, folder: PurePosixPath, name: str) -> None:
    """Delete the entry `name` of `folder` (a symlink itself, never what it points to)."""
    cmd = RemoteCommand.of("sh", "-c", _REMOVE, "comfyfleet-rm", folder, check_entry_name(name))
    done = await run(conn, cmd)
    if done.exit_code != 0:
        raise RemoteError(
            f"could not remove {folder / name} on {conn.target.describe()}: "
            f"{done.stderr.strip()[-500:] or f'exit {done.exit_code}'}"
        )


async def move_in(
    conn: SshConnection, folder: PurePosixPath, staged: PurePosixPath, name: str
) -> None:
    """Move the folder `staged` into `folder` as `name` (refused if `name` exists)."""
    cmd = RemoteCommand.of(
        "sh", "-c", _MOVE_IN, "comfyfleet-mv", folder, staged, check_entry_name(name)
    )
    done = await run(conn, cmd)
    if done.exit_code != 0:
        raise RemoteError(
            f"could not move {staged} to {folder / name} on {conn.target.describe()}: "
            f"{done.stderr.strip()[-500:] or f'exit {done.exit_code}'}"
        )


async def remove_tree(conn: SshConnection, path: PurePosixPath) -> None:
    """`rm -rf PATH` for a folder comfyfleet made itself (a staging folder); never fails."""
    await run(conn, RemoteCommand.of("rm", "-rf", "--", path))
