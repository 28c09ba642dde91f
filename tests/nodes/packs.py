"""Node packs as local git repositories (what `nodes install file:///...` clones)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

GIT = ["git", "-c", "user.name=Pack Author", "-c", "user.email=author@example.com"]


def node_source(*classes: str, imports: str = "", body: str = "") -> str:
    """A pack's __init__.py exporting one STRING node per class name."""
    out = [imports, body]
    for name in classes:
        out.append(
            textwrap.dedent(
                f"""
                class {name}:
                    @classmethod
                    def INPUT_TYPES(cls):
                        return {{"required": {{}}}}

                    RETURN_TYPES = ("STRING",)
                    FUNCTION = "run"
                    CATEGORY = "tests"

                    def run(self):
                        return ("{name}",)
                """
            )
        )
    mappings = ", ".join(f'"{n}": {n}' for n in classes)
    out.append(f"NODE_CLASS_MAPPINGS = {{{mappings}}}\n")
    return "\n".join(out)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [*GIT, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_pack(base: Path, name: str, files: dict[str, str], *, tag: str | None = None) -> str:
    """A repository `base/name` with `files` committed on `main`; returns its file:// URL."""
    repo = base / name
    repo.mkdir(parents=True)
    subprocess.run([*GIT, "init", "-q", "-b", "main", str(repo)], check=True)
    commit(repo, files, "first", tag=tag)
    return repo.as_uri()


def commit(repo: Path, files: dict[str, str], message: str, *, tag: str | None = None) -> str:
    """Write `files`, commit them (and tag the commit); returns the commit id."""
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    if tag:
        git(repo, "tag", tag)
    return git(repo, "rev-parse", "HEAD")
