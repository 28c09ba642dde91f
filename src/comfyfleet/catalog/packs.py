"""Node packs and what a node class resolves to: typed values shared by the node resolvers.

A class resolves to candidates, each a pack with where the match came from (`source`) and
why it matched (`why`):

    why          meaning
    cnr_id       the workflow recorded the registry id of the pack (node `properties.cnr_id`)
    aux_id       the workflow recorded the pack's GitHub `owner/repo` (`properties.aux_id`)
    preemption   a pack declares it owns this class over every other pack that has it
    exact        the class is listed for the pack in ComfyUI-Manager's extension-node-map
    pattern      the class matches a pack's `nodename_pattern`
    registry     the Comfy Registry says a pack provides the class
    user         chosen on the command line (`--pack CLASS=PACK`)

`chosen` is set only when the answer is unambiguous (a recorded id, a preemption, a single
candidate, or the user's choice); otherwise the candidates are shown with a way to choose.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

Source = Literal["workflow", "extension-node-map", "registry", "user"]
Why = Literal["cnr_id", "aux_id", "preemption", "exact", "pattern", "registry", "user"]

#: The registry id ComfyUI records on the nodes it ships itself.
CORE_CNR_ID = "comfy-core"
#: ComfyUI's own entry in the extension-node-map: the classes every ComfyUI has.
CORE_REPO = "https://github.com/comfyanonymous/ComfyUI"


def normalize_repo(url: str) -> str:
    """A repository URL in the form used to compare: lower case, no `.git`, no trailing `/`."""
    text = url.strip().rstrip("/")
    if text.endswith(".git"):
        text = text[:-4]
    return text.lower()


def github_aux_id(url: str) -> str | None:
    """`owner/repo` of a GitHub URL (ComfyUI's `aux_id`), else None."""
    match = re.match(r"^https?://(?:www\.)?github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", url.strip())
    return f"{match.group(1)}/{match.group(2)}" if match else None


@dataclass(frozen=True)
class Pack:
    """A node pack: how users name it (`id`) and where its code lives (`repo`)."""

    id: str
    repo: str  # git URL (or a file URL for single-file packs, see install_type)
    title: str = ""
    author: str = ""
    description: str = ""
    install_type: str = "git-clone"  # git-clone, copy, unzip (ComfyUI-Manager), cnr (registry)
    files: tuple[str, ...] = ()
    registry_id: str | None = None  # the Comfy Registry id, when the pack is published there

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repo": self.repo,
            "title": self.title,
            "install_type": self.install_type,
            "registry_id": self.registry_id,
        }


@dataclass(frozen=True)
class PackHint:
    """What a UI workflow recorded about the pack of a node (`properties` cnr_id/aux_id/ver)."""

    cnr_id: str | None = None
    aux_id: str | None = None
    version: str | None = None  # a release (`1.2.3`) or a commit hash

    @property
    def core(self) -> bool:
        return self.cnr_id == CORE_CNR_ID


@dataclass(frozen=True)
class Candidate:
    """One pack that may provide a class, and why it was proposed."""

    pack: Pack
    source: Source
    why: Why
    detail: str = ""  # the pattern that matched, ...
    version: str | None = None  # the version the workflow recorded for this pack

    def to_json(self) -> dict[str, Any]:
        data = {**self.pack.to_json(), "source": self.source, "why": self.why}
        if self.detail:
            data["detail"] = self.detail
        if self.version:
            data["version"] = self.version
        return data


@dataclass(frozen=True)
class NodeResolution:
    """What provides one node class: ComfyUI itself, some packs, or nothing known."""

    class_type: str
    core: bool = False  # ships with ComfyUI (a target lacking it runs an older ComfyUI)
    candidates: tuple[Candidate, ...] = ()
    chosen: Candidate | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def resolved(self) -> bool:
        """True when a pack to install is known (core classes are not installable)."""
        return self.chosen is not None

    @property
    def ambiguous(self) -> bool:
        return self.chosen is None and len(self.candidates) > 1

    @property
    def unknown(self) -> bool:
        return not self.core and not self.candidates

    def choose_hint(self) -> str | None:
        """The flag that settles an ambiguous class (`--pack CLASS=PACK`)."""
        if not self.ambiguous:
            return None
        return "--pack " + shlex.quote(f"{self.class_type}={self.candidates[0].pack.id}")

    def to_json(self) -> dict[str, Any]:
        return {
            "core": self.core,
            "candidates": [c.to_json() for c in self.candidates],
            "chosen": self.chosen.pack.id if self.chosen else None,
            "choose": self.choose_hint(),
            "notes": list(self.notes),
        }
