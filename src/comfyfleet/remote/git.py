"""Git on an instance: validated repository URLs, refs and names, and the commands run there.

Repository URLs accepted (anything else raises `UnsafeSource` naming the rule):

    https://host[:port]/owner/repo[.git]     no credentials, query or fragment
    ssh://[user@]host[:port]/path[.git]
    user@host:owner/repo[.git]               scp-like, as `git@github.com:owner/repo.git`
    file:///absolute/path[.git]              a repository on the instance's own disk

Paths hold letters, digits and `. _ - ~ + /` only, and no segment is empty, `..` or starts
with `-`, so a URL is one harmless word even before `commands.quote` makes it one. A clone
never asks for credentials (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode): a private or
missing repository fails at once instead of hanging the session.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from comfyfleet.errors import RemoteCommandFailed, UnsafeSource
from comfyfleet.remote.commands import Completed, RemoteCommand, run
from comfyfleet.remote.ssh import SshConnection

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_PATH = r"[A-Za-z0-9._~+/-]+"
_HTTPS = re.compile(rf"^https://(?P<host>{_HOST})(?::\d{{1,5}})?/(?P<path>{_PATH})$")
_SSH = re.compile(
    rf"^ssh://(?:[A-Za-z0-9._-]+@)?(?P<host>{_HOST})(?::\d{{1,5}})?/(?P<path>{_PATH})$"
)
_SCP = re.compile(rf"^[A-Za-z0-9._-]+@(?P<host>{_HOST}):(?P<path>{_PATH})$")
_FILE = re.compile(rf"^file://(?P<path>/{_PATH})$")
#: A custom_nodes entry: what ComfyUI imports as `custom_nodes.<name>`.
_ENTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
#: Branch and tag names, and (abbreviated) commit hashes.
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+/-]{0,199}$")


def check_git_url(url: str) -> str:
    """`url` if it is a repository URL fit for a remote command, else UnsafeSource."""
    text = url.strip()
    if len(text) > 1 and text.endswith("/"):
        text = text[:-1]
    for pattern in (_HTTPS, _SSH, _SCP, _FILE):
        match = pattern.match(text)
        if match is None:
            continue
        segments = match.group("path").split("/")
        inner = segments[1:] if pattern is _FILE else segments
        if any(s in {"", ".", ".."} or s.startswith("-") for s in inner):
            break
        return text
    raise UnsafeSource(
        f"not a usable git repository URL: {url.strip()[:200]!r}",
        hint="give https://host/owner/repo(.git), git@host:owner/repo(.git) or "
        "file:///path/to/repo, without spaces, quotes, credentials or shell characters",
    )


def check_entry_name(name: str) -> str:
    """`name` if it is a plain custom_nodes entry (no `/`, `..`, spaces or shell characters)."""
    if not _ENTRY.match(name) or name in {"__pycache__"}:
        raise UnsafeSource(
            f"not a usable custom node pack name: {name[:200]!r}",
            hint="a pack name is one folder or file name of custom_nodes: letters, digits "
            "and . _ + - only, starting with a letter or digit",
        )
    return name


def repo_dir_name(url: str) -> str:
    """The custom_nodes folder a repository is cloned into: its last path segment sans .git."""
    text = check_git_url(url).rstrip("/")
    tail = re.split(r"[/:]", text)[-1]
    name = tail[:-4] if tail.endswith(".git") else tail
    if name.endswith(".disabled"):
        raise UnsafeSource(
            f"repository {url!r} would be cloned as {name!r}, which ComfyUI never loads",
            hint="rename the repository, or clone it by hand",
        )
    return check_entry_name(name)


def check_ref(ref: str) -> str:
    """`ref` if it is a plain branch, tag or commit name, else UnsafeSource."""
    if not _REF.match(ref) or ".." in ref or ref.endswith((".lock", "/", ".")) or "//" in ref:
        raise UnsafeSource(
            f"not a usable git ref: {ref[:200]!r}",
            hint="give a tag, a branch or a commit hash (letters, digits and . _ + / -)",
        )
    return ref


# --- commands ------------------------------------------------------------------------------


def git(repo: PurePosixPath | None, *args: str | PurePosixPath) -> RemoteCommand:
    """`git [-C repo] ARGS`, never prompting."""
    where: tuple[str | PurePosixPath, ...] = ("-C", repo) if repo is not None else ()
    return RemoteCommand.of("git", *where, *args).with_env(GIT_ENV)


async def _git(
    conn: SshConnection,
    cmd: RemoteCommand,
    what: str,
    timeout: float | None = None,
    hint: str | None = None,
) -> Completed:
    done = await run(conn, cmd, timeout=timeout)
    if done.exit_code == 127:
        raise RemoteCommandFailed(
            f"git is not installed on {conn.target.describe()}",
            exit_code=127,
            command=done.command,
            stderr_tail=done.stderr[-2000:],
            hint="install it on the instance (apt-get install -y git)",
        )
    if done.exit_code != 0:
        tail = done.stderr.strip()[-1500:]
        message = f"{what} failed on {conn.target.describe()} (exit {done.exit_code})"
        message += "".join(f"\n  | {line}" for line in tail.splitlines())
        raise RemoteCommandFailed(
            message, exit_code=done.exit_code, command=done.command, stderr_tail=tail, hint=hint
        )
    return done


async def clone(
    conn: SshConnection, url: str, dest: PurePosixPath, *, timeout: float | None = None
) -> None:
    """`git clone URL DEST` (full history, so any commit can be checked out)."""
    cmd = git(None, "clone", "--quiet", "--", check_git_url(url), dest)
    hint = (
        "check the URL, and that the instance can reach the repository without credentials "
        "(a private repository needs a deploy key on the instance)"
    )
    if not url.startswith(("https://", "file://")):
        hint = (
            "an ssh URL needs a key and the server's host key in known_hosts on the instance "
            "(nothing is accepted unchecked); the https URL of a public repository needs none"
        )
    await _git(conn, cmd, f"cloning {url}", timeout, hint)


async def fetch(conn: SshConnection, repo: PurePosixPath, *, timeout: float | None = None) -> None:
    """Fetch the origin's branches and tags (moved tags included)."""
    cmd = git(repo, "fetch", "--quiet", "--tags", "--force", "origin")
    await _git(conn, cmd, f"fetching into {repo}", timeout)


async def resolve_commit(conn: SshConnection, repo: PurePosixPath, ref: str) -> str | None:
    """The commit `ref` names in `repo`: the origin's branch first (a local branch may be
    stale), then a tag, a local branch or a commit; None when nothing matches."""
    check_ref(ref)
    for candidate in (f"refs/remotes/origin/{ref}", ref):
        cmd = git(repo, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        done = await run(conn, cmd)
        if done.exit_code == 0 and done.stdout.strip():
            return done.stdout.strip()
    return None


async def checkout(conn: SshConnection, repo: PurePosixPath, commit: str) -> None:
    """Check `commit` out (detached: the pack stays at exactly that commit)."""
    cmd = git(repo, "checkout", "--quiet", "--detach", check_ref(commit))
    await _git(conn, cmd, f"checking out {commit} in {repo}")


async def head(conn: SshConnection, repo: PurePosixPath) -> str:
    """The commit checked out in `repo`."""
    done = await _git(conn, git(repo, "rev-parse", "HEAD"), f"reading the commit of {repo}")
    return done.stdout.strip()


async def origin_url(conn: SshConnection, repo: PurePosixPath) -> str | None:
    """The URL of `repo`'s origin remote, or None."""
    done = await run(conn, git(repo, "config", "--get", "remote.origin.url"))
    if done.exit_code != 0:
        return None
    return done.stdout.strip() or None


async def update_submodules(
    conn: SshConnection, repo: PurePosixPath, *, timeout: float | None = None
) -> None:
    cmd = git(repo, "submodule", "--quiet", "update", "--init", "--recursive")
    await _git(conn, cmd, f"updating the submodules of {repo}", timeout)
