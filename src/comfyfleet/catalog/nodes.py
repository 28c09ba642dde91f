"""Which node pack provides a class, from ComfyUI-Manager's catalogs.

`extension-node-map.json` maps a pack's repository URL to `[[class names], {title_aux,
nodename_pattern, preemptions, ...}]`; `custom-node-list.json` lists the packs (`id`,
`reference`, `files`, `install_type`, ...). Resolution follows ComfyUI-Manager
(`manager_core.extract_nodes_from_workflow` and the frontend's missing-node search):

- the workflow's own record of the pack (`cnr_id`, then `aux_id`) comes first;
- classes in ComfyUI's own entry are core and never need a pack;
- a pack's `preemptions` claim a class over every other pack listing it;
- then every pack that lists the class exactly; only when none does, every pack whose
  `nodename_pattern` matches (`re.search`, as ComfyUI-Manager does).

Pack ids are the list's `id` (a Comfy Registry id) when there is one, else the repository
name, as ComfyUI-Manager names them; a name two packs share becomes `owner/repo`.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from comfyfleet.catalog.packs import (
    CORE_REPO,
    Candidate,
    NodeResolution,
    Pack,
    PackHint,
    github_aux_id,
    normalize_repo,
)
from comfyfleet.errors import CatalogFormatError


def check_node_map(data: Any) -> None:
    """Raise CatalogFormatError unless `data` looks like an extension-node-map."""
    if not isinstance(data, dict) or not data:
        raise CatalogFormatError("extension-node-map.json is not a map of repositories")
    if not any(_map_entry(v) is not None for v in list(data.values())[:50]):
        raise CatalogFormatError("extension-node-map.json holds no [[classes], {...}] entries")


def check_node_list(data: Any) -> None:
    """Raise CatalogFormatError unless `data` looks like a custom-node-list."""
    packs = data.get("custom_nodes") if isinstance(data, dict) else None
    if not isinstance(packs, list) or not packs:
        raise CatalogFormatError("custom-node-list.json has no `custom_nodes` list")


def _map_entry(value: Any) -> tuple[list[str], Mapping[str, Any]] | None:
    if not isinstance(value, list) or not value or not isinstance(value[0], list):
        return None
    classes = [c for c in value[0] if isinstance(c, str)]
    meta = value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
    return classes, meta


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _last_segment(url: str) -> str:
    return url.rstrip("/").split("/")[-1]


class NodeIndex:
    """ComfyUI-Manager's node catalogs, indexed for class -> pack resolution."""

    def __init__(self, node_map: Mapping[str, Any], node_list: Mapping[str, Any]) -> None:
        self.core_classes: frozenset[str] = frozenset()
        self._by_class: dict[str, list[str]] = {}  # class -> normalized repos, in map order
        self._preemptions: dict[str, str] = {}  # class -> normalized repo
        self._patterns: list[tuple[re.Pattern[str], str, str]] = []  # (regex, repo, source)
        self._packs: dict[str, Pack] = {}  # normalized repo -> pack
        self._ids: dict[str, list[Pack]] = {}  # lower-case id / aux id / registry id -> packs
        self._index_list(node_list)
        self._index_map(node_map)

    # --- building ------------------------------------------------------------------------

    def _index_list(self, node_list: Mapping[str, Any]) -> None:
        entries = [e for e in node_list.get("custom_nodes") or [] if isinstance(e, dict)]
        entries = [e for e in entries if _strings(e.get("files"))]
        derived = Counter(_last_segment(_strings(e["files"])[0]).lower() for e in entries)
        for entry in entries:
            files = _strings(entry["files"])
            pack_id = entry.get("id") if isinstance(entry.get("id"), str) else None
            name = pack_id or _last_segment(files[0])
            if pack_id is None and derived[name.lower()] > 1:
                name = github_aux_id(files[0]) or files[0]
            pack = Pack(
                id=name,
                repo=files[0],
                title=str(entry.get("title") or name),
                author=str(entry.get("author") or ""),
                description=str(entry.get("description") or ""),
                install_type=str(entry.get("install_type") or "git-clone"),
                files=files,
                registry_id=pack_id,
            )
            reference = entry.get("reference")
            for url in (*files, *([reference] if isinstance(reference, str) else [])):
                self._packs.setdefault(normalize_repo(url), pack)
            pattern = entry.get("nodename_pattern")
            if isinstance(pattern, str):
                self._add_pattern(pattern, normalize_repo(files[0]))
            for cls in _strings(entry.get("preemptions")):
                self._preemptions[cls] = normalize_repo(files[0])
        for pack in {id(p): p for p in self._packs.values()}.values():
            keys = {pack.id.lower(), (pack.registry_id or "").lower()}
            keys.add((github_aux_id(pack.repo) or "").lower())
            for key in keys - {""}:
                self._ids.setdefault(key, []).append(pack)

    def _index_map(self, node_map: Mapping[str, Any]) -> None:
        core: set[str] = set()
        for url, value in node_map.items():
            entry = _map_entry(value)
            if entry is None:
                continue
            classes, meta = entry
            repo = normalize_repo(url)
            if repo == normalize_repo(CORE_REPO):
                core.update(classes)
                continue
            if repo not in self._packs:
                title = meta.get("title_aux") or meta.get("title") or _last_segment(url)
                pack = Pack(id=_last_segment(url), repo=url, title=str(title))
                if self._ids.get(pack.id.lower()):
                    pack = Pack(id=github_aux_id(url) or url, repo=url, title=str(title))
                self._packs[repo] = pack
                self._ids.setdefault(pack.id.lower(), []).append(pack)
            for cls in classes:
                self._by_class.setdefault(cls, []).append(repo)
            for cls in _strings(meta.get("preemptions")):
                self._preemptions[cls] = repo
            if isinstance(meta.get("nodename_pattern"), str):
                self._add_pattern(meta["nodename_pattern"], repo)
        self.core_classes = frozenset(core)

    def _add_pattern(self, pattern: str, repo: str) -> None:
        if any(p.pattern == pattern and r == repo for p, r, _ in self._patterns):
            return
        # a broken pattern in the catalog matches nothing, as in ComfyUI-Manager
        with contextlib.suppress(re.error):
            self._patterns.append((re.compile(pattern), repo, pattern))

    # --- queries -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len({id(p) for p in self._packs.values()})

    def packs_named(self, ref: str) -> list[Pack]:
        """Packs a user may mean by `ref`: an id, a registry id, `owner/repo` or a repo URL."""
        by_url = self._packs.get(normalize_repo(ref))
        if by_url is not None:
            return [by_url]
        return list({id(p): p for p in self._ids.get(ref.strip().lower(), [])}.values())

    def pack(self, ref: str) -> Pack | None:
        found = self.packs_named(ref)
        return found[0] if len(found) == 1 else None

    def pack_titled(self, text: str) -> Pack | None:
        """The one pack whose title is `text` (any case and spacing), or None."""
        words = _words(text)
        found = {id(p): p for p in self._packs.values() if words and _words(p.title) == words}
        return next(iter(found.values())) if len(found) == 1 else None

    def packs_titled(self, text: str, limit: int = 10) -> list[Pack]:
        """Packs whose title is `text` (any case and spacing), else those whose title, id or
        repository holds every word of it; at most `limit`, exact titles first."""
        words = _words(text)
        if not words:
            return []
        packs = list({id(p): p for p in self._packs.values()}.values())
        exact = [p for p in packs if _words(p.title) == words]
        if exact:
            return exact[:limit]
        words = [w for w in words if len(w) > 1]  # a lone letter is in nearly every title
        if not words:
            return []
        loose = [
            p for p in packs if all(w in " ".join((p.title, p.id, p.repo)).lower() for w in words)
        ]

        def rank(p: Pack) -> tuple[int, int, str]:
            title = _words(p.title)
            closeness = 0 if all(w in title for w in words) else 1
            if closeness and not all(w in p.title.lower() for w in words):
                closeness = 2  # the words are only in the id or the repository
            return closeness, len(p.title), p.title.lower()

        return sorted(loose, key=rank)[:limit]

    def is_core(self, class_type: str) -> bool:
        return class_type in self.core_classes

    def _matches(self, class_type: str) -> Iterator[Candidate]:
        preempting = self._preemptions.get(class_type)
        if preempting is not None and preempting in self._packs:
            yield Candidate(self._packs[preempting], "extension-node-map", "preemption")
        exact = self._by_class.get(class_type, [])
        for repo in exact:
            yield Candidate(self._packs[repo], "extension-node-map", "exact")
        if exact or preempting is not None:
            return
        for regex, repo, pattern in self._patterns:
            if repo in self._packs and regex.search(class_type):
                yield Candidate(self._packs[repo], "extension-node-map", "pattern", pattern)

    def resolve(self, class_type: str, hint: PackHint | None = None) -> NodeResolution:
        """Core, or the candidate packs of `class_type` (see the module docstring)."""
        if (hint is not None and hint.core) or self.is_core(class_type):
            return NodeResolution(class_type, core=True)
        first: Candidate | None = None
        notes: list[str] = []
        if hint is not None and hint.cnr_id:
            pack = self.pack(hint.cnr_id)
            if pack is not None:
                first = Candidate(pack, "workflow", "cnr_id", version=hint.version)
            else:
                notes.append(f"the workflow names pack {hint.cnr_id!r}, unknown to the list")
        if first is None and hint is not None and hint.aux_id:
            pack = self.pack(hint.aux_id)
            if pack is not None:
                first = Candidate(pack, "workflow", "aux_id", version=hint.version)
        found = [*([first] if first else []), *self._matches(class_type)]
        candidates: list[Candidate] = []
        for cand in found:
            if all(c.pack.id != cand.pack.id for c in candidates):
                candidates.append(cand)
        settled = len(candidates) == 1 or (
            bool(candidates) and candidates[0].why in {"cnr_id", "aux_id", "preemption"}
        )
        chosen = candidates[0] if settled else None
        return NodeResolution(class_type, False, tuple(candidates), chosen, tuple(notes))
