"""The backup repository adapter: commits of one folder, revisions, work tree, concurrency.

The `git` binary is used here only to check, independently of dulwich, what was written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from comfyfleet.errors import BackupError, UsageError
from comfyfleet.services.backup_repo import BackupRepo, is_safe_path

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="the git binary checks what dulwich wrote")


def git(repo: Path, *args: str) -> str:
    assert GIT is not None
    done = subprocess.run(
        [GIT, "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def no_root(_base: object) -> dict[str, bytes]:
    return {}


def commit(repo: BackupRepo, folder: str, files: dict[str, bytes], when: float = 1e9) -> str | None:
    done = repo.commit_folder(folder, files, no_root, message=f"backup {folder}\n", when=when)
    return None if done is None else done.id


def test_commits_only_changes_and_keeps_other_folders(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = BackupRepo.open(path, create=True)
    assert repo is not None
    with repo:
        first = commit(repo, "a", {"workflows/x.json": b"1", "workflows/sub/y.json": b"2"})
        assert first is not None
        assert commit(repo, "a", {"workflows/x.json": b"1", "workflows/sub/y.json": b"2"}) is None
        second = commit(repo, "b", {"workflows/z.json": b"3"})
        third = commit(repo, "a", {"workflows/x.json": b"1b"})  # y.json deleted on the server
        assert second and third and len({first, second, third}) == 3
        head = repo.head()
        assert {p: repo.read(b) for p, b in repo.files(head, "a").items()} == {
            "workflows/x.json": b"1b"
        }
        assert list(repo.files(head, "b")) == ["workflows/z.json"]
        assert repo.files(repo.resolve("HEAD~2"), "a") == repo.files(repo.resolve(first), "a")
        assert repo.resolve(first[:8]) == repo.resolve(first)
        assert repo.resolve("main") == head
        with pytest.raises(UsageError, match="no revision 'HEAD~9'"):
            repo.resolve("HEAD~9")
        with pytest.raises(UsageError, match="no revision 'nope'"):
            repo.resolve("nope")
    # the work tree follows: the deleted file and its empty folder are gone
    assert (path / "a" / "workflows" / "x.json").read_bytes() == b"1b"
    assert not (path / "a" / "workflows" / "sub").exists()
    if GIT:
        assert git(path, "status", "--porcelain") == ""
        assert git(path, "log", "--format=%an|%s").splitlines() == [
            "comfyfleet|backup a",
            "comfyfleet|backup b",
            "comfyfleet|backup a",
        ]
        git(path, "fsck", "--strict")


def test_a_writer_that_lost_the_race_rebuilds_on_the_new_head(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    first = BackupRepo.open(path, create=True)
    second = BackupRepo.open(path, create=False)
    assert first is not None and second is not None
    calls = []

    def root_files(base: object) -> dict[str, bytes]:
        calls.append(base)
        if len(calls) == 1:  # another process commits between our read and our update
            assert commit(second, "other", {"workflows/o.json": b"o"}) is not None
        return {"index.json": str(len(calls)).encode()}

    done = first.commit_folder(
        "mine", {"workflows/m.json": b"m"}, root_files, message="mine\n", when=1e9
    )
    assert done is not None and len(calls) == 2
    files = first.files(first.head())
    assert set(files) == {"other/workflows/o.json", "mine/workflows/m.json", "index.json"}
    first.close()
    second.close()


def test_bare_repositories_take_backups(tmp_path: Path) -> None:
    if GIT is None:
        pytest.skip("needs git to make a bare repository")
    path = tmp_path / "bare.git"
    subprocess.run([GIT, "init", "--bare", "-q", str(path)], check=True, timeout=30)
    repo = BackupRepo.open(path, create=False)
    assert repo is not None
    with repo:
        assert commit(repo, "a", {"workflows/x.json": b"x"}) is not None
    assert git(path, "show", "HEAD:a/workflows/x.json") == "x"


@needs_git
def test_detached_head_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = BackupRepo.open(path, create=True)
    assert repo is not None
    with repo:
        first = commit(repo, "a", {"workflows/x.json": b"x"})
        assert first is not None
    git(path, "checkout", "-q", "--detach", first)
    repo = BackupRepo.open(path, create=False)
    assert repo is not None
    with repo, pytest.raises(BackupError, match="detached HEAD"):
        commit(repo, "a", {"workflows/x.json": b"y"})


def test_a_folder_that_is_not_a_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match="not a git repository"):
        BackupRepo.open(tmp_path / "stuff", create=True)
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "mine"
    assert BackupRepo.open(tmp_path / "absent", create=False) is None
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("path", "safe"),
    [
        ("a.json", True),
        ("nested/deeper/a b.json", True),
        ("../escape.json", False),
        ("x/../../y.json", False),
        (".git/config", False),
        ("a//b.json", False),
        ("line\nbreak.json", False),
        ("back\\slash.json", False),
    ],
)
def test_safe_paths(path: str, safe: bool) -> None:
    assert is_safe_path(path) is safe
