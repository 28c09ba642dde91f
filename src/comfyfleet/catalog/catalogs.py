"""One entry point to every catalog: open once per command, ask about classes and files.

    async with Catalogs(settings) as catalogs:
        packs = await catalogs.resolve_nodes(["ImpactWildcardProcessor"])
        files = await catalogs.resolve_models([WantedModel("loras", "x.safetensors")])
        catalogs.warnings       # every fallback and every source that did not answer

Catalog files come through `fetch.CatalogStore` (cache, then network, then the shipped
copy); registry and hub answers through one `LookupCache` saved on exit. With
`[catalog] offline`, nothing is asked over the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from comfyfleet.catalog.cache import LookupCache
from comfyfleet.catalog.fetch import CatalogStore, Provenance
from comfyfleet.catalog.http import CatalogHttp
from comfyfleet.catalog.hubs import HubClient
from comfyfleet.catalog.manifest import Manifest, load_manifest
from comfyfleet.catalog.models import (
    Gathered,
    ModelIndex,
    ModelResolution,
    WantedModel,
    check_model_list,
    gather,
)
from comfyfleet.catalog.nodes import NodeIndex, check_node_list, check_node_map
from comfyfleet.catalog.packs import (
    Candidate,
    NodeResolution,
    Pack,
    PackHint,
    github_aux_id,
    normalize_repo,
)
from comfyfleet.catalog.registry import Registry
from comfyfleet.catalog.sources import CivitaiRef, HfRef, Hubs, ModelSource, check_url
from comfyfleet.config import Settings
from comfyfleet.errors import UnsafeSource, UsageError
from comfyfleet.util.resource import AsyncResource

R = TypeVar("R")
#: Requests to one catalog service in flight at once.
CONCURRENCY = 8


class Catalogs(AsyncResource):
    """ComfyUI-Manager's catalogs, the Comfy Registry, the hubs and the user's manifest."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings.catalog
        self.cache_dir = self.settings.cache_dir or settings.cache_dir() / "catalog"
        self.hubs = Hubs(self.settings.huggingface_url, self.settings.civitai_url)
        explicit = self.settings.models_manifest
        self.manifest_path: Path = explicit or settings.config_dir() / "models.toml"
        self._manifest_required = explicit is not None
        self._transport = transport
        self._now = now
        self._http: CatalogHttp | None = None
        self._cache = LookupCache(self.cache_dir / "lookups.json", ttl=self.settings.ttl, now=now)
        self._store = CatalogStore(self.cache_dir, http=None, ttl=self.settings.ttl)
        self.registry: Registry | None = None
        self.hub_client: HubClient | None = None
        self.provenance: dict[str, Provenance] = {}
        self._nodes: NodeIndex | None = None
        self._models: ModelIndex | None = None
        self._manifest: Manifest | None = None

    async def aopen(self) -> None:
        if not self.settings.offline:
            self._http = CatalogHttp(timeout=self.settings.timeout, transport=self._transport)
            self.hub_client = HubClient(self.hubs, self._http, self._cache)
            if self.settings.registry:
                self.registry = Registry(self.settings.registry_url, self._http, self._cache)
        self._store = CatalogStore(
            self.cache_dir,
            http=self._http,
            ttl=self.settings.ttl,
            offline=self.settings.offline,
            now=self._now,
        )

    async def aclose(self) -> None:
        self._cache.save()
        if self._http is not None:
            await self._http.aclose()

    @property
    def warnings(self) -> list[str]:
        """Every fallback taken and every service that stopped answering, in order."""
        found = [p.warning for p in self.provenance.values() if p.warning]
        if self.registry is not None and self.registry.warning:
            found.append(self.registry.warning)
        if self.hub_client is not None:
            found.extend(self.hub_client.warnings.values())
        return found

    # --- catalogs ------------------------------------------------------------------------

    async def nodes(self) -> NodeIndex:
        """ComfyUI-Manager's extension-node-map and custom-node-list, indexed."""
        if self._nodes is None:
            node_map, node_list = await asyncio.gather(
                self._store.get("node-map", self.settings.node_map_url, check_node_map),
                self._store.get("node-list", self.settings.node_list_url, check_node_list),
            )
            self.provenance["node-map"] = node_map.provenance
            self.provenance["node-list"] = node_list.provenance
            self._nodes = NodeIndex(node_map.data, node_list.data)
        return self._nodes

    async def models(self) -> ModelIndex:
        """ComfyUI-Manager's model-list, indexed by file name."""
        if self._models is None:
            fetched = await self._store.get(
                "model-list", self.settings.model_list_url, check_model_list
            )
            self.provenance["model-list"] = fetched.provenance
            self._models = ModelIndex(fetched.data)
        return self._models

    def manifest(self) -> Manifest:
        """The user's models manifest (empty when the default file does not exist)."""
        if self._manifest is None:
            self._manifest = load_manifest(
                self.manifest_path, self.hubs, required=self._manifest_required
            )
        return self._manifest

    # --- node packs ----------------------------------------------------------------------

    async def pack(self, ref: str) -> Pack | None:
        """The pack `ref` names (id, registry id, `owner/repo`, repo URL), or None."""
        index = await self.nodes()
        found = index.pack(ref)
        if found is None and self.registry is not None and "/" not in ref:
            found = await self.registry.node(ref)
        return found

    async def resolve_nodes(
        self,
        classes: Iterable[str],
        hints: Mapping[str, PackHint] | None = None,
        choices: Mapping[str, str] | None = None,
    ) -> dict[str, NodeResolution]:
        """Class -> resolution; `choices` (class -> pack ref) settle ambiguous classes."""
        index = await self.nodes()
        hints, choices = hints or {}, choices or {}

        async def one(class_type: str) -> NodeResolution:
            res = await self._with_registry(
                index.resolve(class_type, hints.get(class_type)), hints.get(class_type)
            )
            if class_type in choices and not res.core:
                res = await self._choose(res, choices[class_type])
            return res

        names = sorted(set(classes))
        return dict(zip(names, await _bounded([one(n) for n in names]), strict=True))

    async def _with_registry(self, res: NodeResolution, hint: PackHint | None) -> NodeResolution:
        if res.core or self.registry is None:
            return res
        cands = list(res.candidates)
        recorded = bool(cands) and cands[0].why in {"cnr_id", "aux_id"}
        if hint is not None and hint.cnr_id and not recorded:
            pack = await self.registry.node(hint.cnr_id)
            if pack is not None:
                first = Candidate(pack, "workflow", "cnr_id", version=hint.version)
                rest = (c for c in cands if not _same_pack(c.pack, pack))
                return dataclasses.replace(res, candidates=(first, *rest), chosen=first)
        if res.chosen is not None:
            return res
        pack = await self.registry.node_for_class(res.class_type)
        if pack is None:
            return res
        same = [c for c in cands if _same_pack(c.pack, pack)]
        if same:
            cands = [*same, *(c for c in cands if c not in same)]
            notes = (*res.notes, f"the Comfy Registry names {same[0].pack.id}")
            return dataclasses.replace(res, candidates=tuple(cands), notes=notes)
        cands.append(Candidate(pack, "registry", "registry"))
        chosen = cands[0] if len(cands) == 1 else None
        return dataclasses.replace(res, candidates=tuple(cands), chosen=chosen)

    async def _choose(self, res: NodeResolution, ref: str) -> NodeResolution:
        picked = next((c for c in res.candidates if _names(c.pack, ref)), None)
        if picked is None:
            pack = await self.pack(ref)
            if pack is None and "://" in ref:
                pack = _pack_from_url(ref)
            if pack is None:
                listed = ", ".join(c.pack.id for c in res.candidates) or "none known"
                raise UsageError(
                    f"--pack {res.class_type}={ref}: no node pack {ref!r} is known",
                    hint=f"give a pack id or a git URL; candidates for {res.class_type}: {listed}",
                )
            picked = Candidate(pack, "user", "user")
            return dataclasses.replace(res, candidates=(picked, *res.candidates), chosen=picked)
        return dataclasses.replace(res, chosen=picked, notes=(*res.notes, "chosen with --pack"))

    # --- model files ---------------------------------------------------------------------

    async def resolve_models(self, wanted: Sequence[WantedModel]) -> list[ModelResolution]:
        """Sources for each wanted file, in the order of `wanted`."""
        if not wanted:
            return []
        index = await self.models()
        manifest = self.manifest()
        gathered = [gather(w, index, manifest, self.hubs) for w in wanted]
        marks: dict[str, bool] = {}
        if self.hub_client is not None:
            await _bounded([self._complete(g) for g in gathered])
            marks = await self._needs_token([s for g in gathered for s in g.sources])
        for g in gathered:
            if g.pending and self.hub_client is None:
                g.problems.append("a Civitai source without a version needs the network")
        return [g.result(marks) for g in gathered]

    async def _complete(self, g: Gathered) -> None:
        """Civitai refs without a version -> the newest one; no source + sha256 -> by hash."""
        assert self.hub_client is not None
        for ref, origin, folder, sha in g.pending:
            version = await self.hub_client.civitai_latest_version(ref.model_id or 0)
            if version is None:
                g.problems.append(f"no version of Civitai model {ref.model_id} could be found")
                continue
            g.add(CivitaiRef(ref.model_id, version), origin, folder, sha)
        sha256 = g.wanted.sha256
        if g.sources or sha256 is None:
            return
        found = await self.hub_client.civitai_by_hash(sha256)
        if found is not None:
            ref = CivitaiRef(found.model_id, found.version_id)
            g.add(ref, "civitai-hash", g.wanted.folder, sha256)

    async def _needs_token(self, sources: Sequence[ModelSource]) -> dict[str, bool]:
        """url -> True for Hugging Face sources whose repository is gated or private."""
        assert self.hub_client is not None
        repos = sorted({s.ref.repo for s in sources if isinstance(s.ref, HfRef)})
        answers = await _bounded([self.hub_client.hf_needs_token(r) for r in repos])
        gated = {repo for repo, needs in zip(repos, answers, strict=True) if needs}
        return {s.url: True for s in sources if isinstance(s.ref, HfRef) and s.ref.repo in gated}


def _same_pack(a: Pack, b: Pack) -> bool:
    if a.registry_id and a.registry_id == b.registry_id:
        return True
    return normalize_repo(a.repo) == normalize_repo(b.repo)


def _names(pack: Pack, ref: str) -> bool:
    wanted = ref.strip().lower()
    keys = {pack.id.lower(), (pack.registry_id or "").lower(), normalize_repo(pack.repo)}
    keys.add((github_aux_id(pack.repo) or "").lower())
    keys.discard("")
    return wanted in keys or normalize_repo(ref) in keys


def _pack_from_url(url: str) -> Pack | None:
    try:
        check_url(url)
    except UnsafeSource:
        return None
    name = url.rstrip("/").split("/")[-1].removesuffix(".git")
    return Pack(id=name, repo=url, title=name, files=(url,)) if name else None


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


async def _bounded(calls: Sequence[Awaitable[R]]) -> list[R]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(call: Awaitable[R]) -> R:
        async with gate:
            return await call

    return list(await asyncio.gather(*(run(c) for c in calls)))
