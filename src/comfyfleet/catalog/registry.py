"""The Comfy Registry (api.comfy.org), asked best effort about node classes and packs.

Two public, unauthenticated calls (the registry's OpenAPI description):

    GET {registry}/comfy-nodes/{comfyNodeName}/node   the Node that contains a class; 404: none
    GET {registry}/nodes/{nodeId}                     one Node by its id; 404: none

A Node carries `id`, `name`, `repository`, `description`, `publisher {id, name}` and
`latest_version {version}`. Answers (negative ones too) are remembered in the lookup cache.
The first failure to reach the registry switches it off for the rest of the run and leaves
one warning: the catalogs of ComfyUI-Manager still answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from comfyfleet.catalog.cache import MISS, LookupCache
from comfyfleet.catalog.http import CatalogHttp
from comfyfleet.catalog.packs import Pack
from comfyfleet.errors import CatalogError
from comfyfleet.util.redact import redact_url


def pack_from_node(node: Any) -> Pack | None:
    """A Pack from a registry Node (None when it lacks an id or a repository)."""
    if not isinstance(node, dict):
        return None
    node_id, repo = node.get("id"), node.get("repository")
    if not isinstance(node_id, str) or not node_id or not isinstance(repo, str) or not repo:
        return None
    publisher = node.get("publisher")
    publisher = publisher if isinstance(publisher, dict) else {}
    return Pack(
        id=node_id,
        repo=repo,
        title=str(node.get("name") or node_id),
        author=str(publisher.get("name") or publisher.get("id") or ""),
        description=str(node.get("description") or ""),
        install_type="cnr",
        files=(repo,),
        registry_id=node_id,
    )


def latest_version(node: Any) -> str | None:
    latest = node.get("latest_version") if isinstance(node, dict) else None
    version = latest.get("version") if isinstance(latest, dict) else None
    return version if isinstance(version, str) else None


def _slim(node: Any) -> Any:
    """The fields a Pack needs (what the lookup cache keeps)."""
    if not isinstance(node, dict):
        return None
    keep = ("id", "name", "repository", "description", "publisher", "latest_version")
    return {k: node[k] for k in keep if k in node}


class Registry:
    """A best-effort Comfy Registry client; `warning` says why it stopped answering."""

    def __init__(self, base_url: str, http: CatalogHttp, cache: LookupCache) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._cache = cache
        self.warning: str | None = None

    async def node_for_class(self, class_type: str) -> Pack | None:
        """The pack the registry says provides `class_type`, if any."""
        path = f"comfy-nodes/{quote(class_type, safe='')}/node"
        return pack_from_node(await self._get(f"class:{class_type}", path))

    async def node(self, node_id: str) -> Pack | None:
        """The registry's pack `node_id`, if it exists."""
        return pack_from_node(
            await self._get(f"node:{node_id}", f"nodes/{quote(node_id, safe='')}")
        )

    async def _get(self, key: str, path: str) -> Any:
        remembered = self._cache.get(f"registry:{self.base_url}:{key}")
        if remembered is not MISS:
            return remembered
        if self.warning is not None:
            return None
        url = f"{self.base_url}/{path}"
        try:
            answer = await self._http.get(url, headers={"Accept": "application/json"})
            if answer.status == 404:
                value = None
            elif answer.status == 200:
                value = _slim(answer.json(f"the registry's answer from {redact_url(url)}"))
            else:
                raise CatalogError(f"{redact_url(url)} answered HTTP {answer.status}")
        except CatalogError as exc:
            self.warning = (
                f"the Comfy Registry did not answer ({exc.message}); "
                "node packs were resolved from ComfyUI-Manager's catalogs only"
            )
            return None
        self._cache.put(f"registry:{self.base_url}:{key}", value)
        return value
