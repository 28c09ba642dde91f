"""Which repository a `nodes install` argument names, and the custom_nodes folder it gets.

SOURCE is a git URL (`remote.git.check_git_url`: https, ssh, scp-like, file) or a pack the
catalogs know: ComfyUI-Manager's id, the Comfy Registry id, GitHub `owner/repo`, its
repository URL, or its title ("ComfyUI Impact Pack"; an unknown name lists titles like it).
Packs ComfyUI-Manager installs by copying or unzipping files are not git
repositories and are refused with the way out. A catalog's URL is validated like a user's:
a poisoned catalog entry never reaches a remote command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from comfyfleet.catalog import Catalogs
from comfyfleet.catalog.packs import Pack, normalize_repo
from comfyfleet.config import Settings
from comfyfleet.errors import UnsafeSource, UsageError
from comfyfleet.remote.git import check_git_url, repo_dir_name

_PACK_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@/-]{0,199}$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:")
# A pack's title as ComfyUI-Manager shows it ("ComfyUI Impact Pack"): only ever looked up in
# the catalogs, never put in a command.
_TITLE = re.compile(r"^[\w][\w .,:&'()+-]{0,199}$")
GIT_INSTALLS = frozenset({"git-clone", "cnr"})


@dataclass(frozen=True)
class PackSource:
    """A pack to install: its repository and the custom_nodes folder it is cloned into."""

    url: str
    name: str
    pack_id: str | None = None  # the catalog's id, when a catalog named it
    title: str | None = None
    warnings: tuple[str, ...] = field(default=())  # catalog fallbacks taken

    def same_repo(self, url: str | None) -> bool:
        return url is not None and normalize_repo(url) == normalize_repo(self.url)


def looks_like_url(text: str) -> bool:
    return "://" in text or bool(_SCP_LIKE.match(text))


def check_pack_ref(text: str) -> str:
    """`text` if it can name a catalog pack (no spaces or shell characters), else UnsafeSource."""
    if not _PACK_REF.match(text) or ".." in text:
        raise UnsafeSource(
            f"not a usable node pack name: {text[:200]!r}",
            hint="give a pack id (comfyui-impact-pack), a GitHub owner/repo, or a git URL; "
            "letters, digits and . _ + @ / - only",
        )
    return text


def _unknown(text: str, like: list[Pack]) -> UsageError:
    if like:
        listed = "; ".join(f"{p.id} ({p.title})" for p in like)
        return UsageError(
            f"no node pack is called {text!r}; packs with titles like it: {listed}",
            hint="give one of these ids, the pack's GitHub owner/repo, or its git URL",
        )
    return UsageError(
        f"no node pack {text!r} is known to ComfyUI-Manager's list or the Comfy Registry",
        hint="give the pack's git URL (https://github.com/OWNER/REPO), or its id as "
        "`comfyfleet workflow deps` lists it",
    )


async def resolve_source(settings: Settings, text: str) -> PackSource:
    """The repository SOURCE names (see the module docstring)."""
    text = text.strip()
    if looks_like_url(text):
        url = check_git_url(text)
        return PackSource(url, repo_dir_name(url))
    titled = _TITLE.match(text) is not None and not _PACK_REF.match(text)
    if not titled:
        check_pack_ref(text)
    async with Catalogs(settings) as catalogs:
        index = await catalogs.nodes()
        pack = index.pack_titled(text) if titled else None
        if pack is None and not titled:
            pack = await catalogs.pack(text)
        if pack is None:
            named = [] if titled else index.packs_named(text)
            if len(named) > 1:
                listed = ", ".join(f"{p.id} ({p.repo})" for p in named[:10])
                raise UsageError(
                    f"several node packs are named {text!r}: {listed}",
                    hint="give the pack's git URL, or its GitHub owner/repo",
                )
            raise _unknown(text, index.packs_titled(text))
        warnings = tuple(catalogs.warnings)
    if pack.install_type not in GIT_INSTALLS:
        raise UsageError(
            f"node pack {pack.id!r} is installed by {pack.install_type} of files, not from a "
            "git repository",
            hint="copy its files into custom_nodes yourself (comfyfleet exec), or give a git "
            "URL of the pack",
        )
    try:
        url = check_git_url(pack.repo)
    except UnsafeSource as exc:
        raise UnsafeSource(
            f"the catalog gives node pack {pack.id!r} an unusable repository URL "
            f"{pack.repo[:200]!r}",
            hint="give the pack's git URL yourself",
        ) from exc
    return PackSource(url, repo_dir_name(url), pack.id, pack.title or None, warnings)
