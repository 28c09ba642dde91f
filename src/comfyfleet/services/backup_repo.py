"""The backup repository: a git repository read and written with dulwich (no `git` binary).

A backup commit replaces one folder of the current branch's tree (and the index file at the
root) and leaves every other path as it was, so instances never touch each other's folders.
The commit is built from objects, then the branch moves with compare-and-swap, so two
processes backing up at once never lose each other's commit (the loser rebuilds on top). In a
repository with a work tree, the paths the commit changed are written out and staged too, so
`git status` stays clean; files of other folders are never touched.

Every dulwich or file-system failure leaves this module as a `BackupError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dulwich import objectspec
from dulwich.errors import NotCommitError, NotGitRepository
from dulwich.file import FileLocked
from dulwich.index import (
    commit_tree,
    index_entry_from_stat,
    validate_path_element_default,
)
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Blob, Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from comfyfleet.errors import BackupError, UsageError

__all__ = ["AUTHOR", "BackupRepo", "Committed", "ObjectID", "blob_id", "is_safe_path"]

AUTHOR = b"comfyfleet <comfyfleet@localhost>"
DEFAULT_BRANCH = b"main"
FILE_MODE = 0o100644
_ATTEMPTS = 5  # compare-and-swap retries when another process moved the branch meanwhile
_REV_SUFFIX = re.compile(r"^(.*?)((?:~\d*|\^)*)$")


@dataclass(frozen=True)
class Committed:
    """A new backup commit; `worktree_error` when its files could not be written out."""

    id: str
    worktree_error: str | None = None


def is_safe_path(path: str) -> bool:
    """Whether `path` (relative, `/`-separated) may be stored: no `..`, `.git` or empty parts."""
    if any(ord(c) < 0x20 for c in path) or "\\" in path:
        return False
    return all(part and validate_path_element_default(part.encode()) for part in path.split("/"))


def blob_id(data: bytes) -> ObjectID:
    """The git object id `data` has (or would have) in any repository."""
    return Blob.from_string(data).id


class BackupRepo:
    """One backup repository (bare or with a work tree), open for one command."""

    def __init__(self, repo: Repo, path: Path) -> None:
        self._repo = repo
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool) -> BackupRepo | None:
        """The repository at `path`; created there when absent and `create`, else None."""
        path = path.expanduser()
        try:
            return cls(Repo(str(path)), path)
        except NotGitRepository:
            pass
        except (OSError, ValueError, KeyError) as exc:
            raise BackupError(f"cannot open the backup repository {path}: {exc}") from exc
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise BackupError(
                f"{path} is not a git repository",
                hint="give a new or empty folder, or an existing git repository, as --repo",
            )
        if not create:
            return None
        try:
            repo = Repo.init(str(path), mkdir=not path.exists(), default_branch=DEFAULT_BRANCH)
        except OSError as exc:
            raise BackupError(f"cannot create the backup repository {path}: {exc}") from exc
        return cls(repo, path)

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> BackupRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ----------------------------------------------------------------------------

    def head(self) -> ObjectID | None:
        """The commit the current branch points at (None in a repository without commits)."""
        return self._branch()[1]

    def resolve(self, rev: str | None) -> ObjectID | None:
        """A commit from `rev` (id or prefix, branch, tag, `HEAD`, with `~N`/`^`); None: HEAD."""
        if rev is None:
            return self.head()
        match = _REV_SUFFIX.match(rev.strip())
        assert match is not None
        base, suffix = match.group(1) or "HEAD", match.group(2)
        try:
            commit = objectspec.parse_commit(self._repo, base)
            for step in re.findall(r"~\d*|\^", suffix):
                count = 1 if step in ("~", "^") else int(step[1:])
                for _ in range(count):
                    if not commit.parents:
                        raise KeyError(rev)
                    commit = self._commit(commit.parents[0])
        except (KeyError, ValueError, NotCommitError) as exc:
            raise UsageError(
                f"the backup repository {self.path} has no revision {rev!r}",
                hint="give a commit id (or its start), a branch or tag, or HEAD~N "
                "(`git log` in the repository lists the backups)",
            ) from exc
        return commit.id

    def files(self, commit: ObjectID | None, folder: str = "") -> dict[str, ObjectID]:
        """Blob ids of the files under `folder` at `commit`, by path relative to `folder`."""
        if commit is None:
            return {}
        prefix = f"{folder}/" if folder else ""
        out: dict[str, ObjectID] = {}
        for path, (sha, mode) in self._flat(self._commit(commit).tree).items():
            if path.startswith(prefix) and stat.S_ISREG(mode):
                out[path[len(prefix) :]] = sha
        return out

    def read(self, blob_id: ObjectID) -> bytes:
        try:
            obj = self._repo.object_store[blob_id]
        except KeyError as exc:
            raise BackupError(
                f"the backup repository {self.path} lacks object {blob_id!r}"
            ) from exc
        if not isinstance(obj, Blob):
            raise BackupError(f"the backup repository {self.path} is damaged: {blob_id!r}")
        return obj.data

    def read_path(self, commit: ObjectID | None, path: str) -> bytes | None:
        blob = self.files(commit).get(path)
        return None if blob is None else self.read(blob)

    # --- writing ----------------------------------------------------------------------------

    def commit_folder(
        self,
        folder: str,
        files: Mapping[str, bytes],
        root_files: Callable[[ObjectID | None], Mapping[str, bytes]],
        *,
        message: str,
        when: float,
    ) -> Committed | None:
        """Make `folder` hold exactly `files`; commit only when that changes the tree.

        `root_files(base)` gives the files to put at the root on top of commit `base` (called
        again when another process moved the branch meanwhile). Returns the new commit, or
        None when nothing changed."""
        for _ in range(_ATTEMPTS):
            ref, old = self._branch()
            base = self._flat(self._commit(old).tree) if old is not None else {}
            wanted = {p: e for p, e in base.items() if not p.startswith(f"{folder}/")}
            for rel, data in files.items():
                wanted[f"{folder}/{rel}"] = (self._blob(data), FILE_MODE)
            for name, data in root_files(old).items():
                wanted[name] = (self._blob(data), FILE_MODE)
            tree = commit_tree(
                self._repo.object_store,
                [
                    (p.encode("utf-8", errors="surrogateescape"), s, m)
                    for p, (s, m) in wanted.items()
                ],
            )
            if old is not None and self._commit(old).tree == tree:
                return None
            commit = self._new_commit(tree, old, message, when)
            try:
                # old None would mean "do not check" to set_if_equals: a first commit must
                # create the branch only if nobody did meanwhile
                if old is None:
                    moved = self._repo.refs.add_if_new(ref, commit.id)
                else:
                    moved = self._repo.refs.set_if_equals(ref, old, commit.id)
            except FileLocked:
                moved = False
            if moved:
                error = self._sync_worktree(base, wanted)
                return Committed(commit.id.decode(), error)
            time.sleep(0.05)  # another process committed meanwhile: rebuild on its commit
        raise BackupError(
            f"the backup repository {self.path} kept changing under us",
            hint="another process is writing to it; try again",
        )

    def _new_commit(
        self, tree: ObjectID, parent: ObjectID | None, message: str, when: float
    ) -> Commit:
        commit = Commit()
        commit.tree = tree
        commit.parents = [parent] if parent is not None else []
        commit.author = commit.committer = AUTHOR
        commit.author_time = commit.commit_time = int(when)
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.encode("utf-8")
        self._repo.object_store.add_object(commit)
        return commit

    def _blob(self, data: bytes) -> ObjectID:
        blob = Blob.from_string(data)
        self._repo.object_store.add_object(blob)
        return blob.id

    def _sync_worktree(
        self,
        before: Mapping[str, tuple[ObjectID, int]],
        after: Mapping[str, tuple[ObjectID, int]],
    ) -> str | None:
        """Write out and stage the paths the commit changed (repositories with a work tree)."""
        if self._repo.bare:
            return None
        changed = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
        root = Path(self._repo.path)
        try:
            index = self._repo.open_index()
            for path in sorted(changed):
                target = root / path
                key = path.encode("utf-8", errors="surrogateescape")
                if path in after:
                    sha, mode = after[path]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(self.read(sha))
                    index[key] = index_entry_from_stat(os.stat(target), sha, mode)
                else:
                    target.unlink(missing_ok=True)
                    if key in index:
                        del index[key]
                    _prune_empty(target.parent, root)
            index.write()
        except (OSError, FileLocked) as exc:
            return f"the commit is saved, but its files were not all written out: {exc}"
        return None

    # --- internals --------------------------------------------------------------------------

    def _branch(self) -> tuple[Ref, ObjectID | None]:
        try:
            chain, sha = self._repo.refs.follow(Ref(b"HEAD"))
        except (KeyError, ValueError) as exc:
            raise BackupError(f"cannot read HEAD of {self.path}: {exc}") from exc
        ref = chain[-1] if chain else Ref(b"HEAD")
        if not ref.startswith(b"refs/heads/"):
            raise BackupError(
                f"the backup repository {self.path} has a detached HEAD",
                hint="check out a branch there (git switch main)",
            )
        return ref, sha

    def _commit(self, sha: ObjectID) -> Commit:
        obj = self._repo.object_store[sha]
        if not isinstance(obj, Commit):
            raise NotCommitError(sha)
        return obj

    def _flat(self, tree: ObjectID) -> dict[str, tuple[ObjectID, int]]:
        return {
            e.path.decode("utf-8", errors="surrogateescape"): (e.sha, e.mode)
            for e in iter_tree_contents(self._repo.object_store, tree)
        }


def _prune_empty(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        with contextlib.suppress(OSError):
            folder.rmdir()  # fails (and stops) at the first folder that is not empty
        if folder.exists():
            return
        folder = folder.parent
