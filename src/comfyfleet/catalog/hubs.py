"""Hugging Face and Civitai metadata, asked best effort (public endpoints, no token).

    GET {civitai}/api/v1/model-versions/by-hash/{sha256}   the version holding a file
    GET {civitai}/api/v1/models/{model}                    a model, newest version first
    GET {civitai}/api/v1/model-versions/{version}          a version: its model's type, files
    GET {huggingface}/api/models/{owner}/{repo}            `gated` (false/"auto"/"manual"),
                                                           `private`; 401/403: needs a token

Answers, negative ones too, are remembered in the lookup cache. A hub that cannot be
reached is asked nothing more during the run and leaves one warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from comfyfleet.catalog.cache import MISS, LookupCache
from comfyfleet.catalog.http import CatalogHttp
from comfyfleet.catalog.sources import Hubs
from comfyfleet.errors import CatalogError
from comfyfleet.util.redact import redact_url


@dataclass(frozen=True)
class CivitaiFile:
    """The Civitai model version (and file) a hash names."""

    model_id: int | None
    version_id: int
    name: str
    sha256: str | None


@dataclass(frozen=True)
class CivitaiVersionFile:
    """One file of a Civitai model version."""

    name: str
    sha256: str | None
    primary: bool
    type: str  # "Model", "Pruned Model", "VAE", "Config", "Training Data"...


@dataclass(frozen=True)
class CivitaiVersion:
    """A Civitai model version: its model's type (Checkpoint, LORA, ...) and its files."""

    model_id: int | None
    version_id: int
    model_type: str
    files: tuple[CivitaiVersionFile, ...]


Slim = Callable[[dict[str, Any]], Any]


def _version_slim(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    files = []
    for file in body.get("files") or []:
        if not isinstance(file, dict) or not isinstance(file.get("name"), str):
            continue
        hashes = file.get("hashes")
        sha = hashes.get("SHA256") if isinstance(hashes, dict) else None
        files.append(
            {
                "name": file["name"],
                "sha256": sha if isinstance(sha, str) else None,
                "primary": file.get("primary") is True,
                "type": str(file.get("type") or ""),
            }
        )
    return {
        "id": body.get("id"),
        "modelId": body.get("modelId"),
        "type": str(model.get("type") or "") if isinstance(model, dict) else "",
        "files": files,
    }


def _newest(model: dict[str, Any]) -> dict[str, Any]:
    versions = model.get("modelVersions")
    first = versions[0] if isinstance(versions, list) and versions else None
    return {"latest": first.get("id") if isinstance(first, dict) else None}


class HubClient:
    """Look-ups on Hugging Face and Civitai; `warnings` says which hub stopped answering."""

    def __init__(self, hubs: Hubs, http: CatalogHttp, cache: LookupCache) -> None:
        self.hubs = hubs
        self._http = http
        self._cache = cache
        self.warnings: dict[str, str] = {}  # hub name -> why it is no longer asked

    async def _get(self, hub: str, key: str, url: str, slim: Slim, ok: tuple[int, ...] = ()) -> Any:
        """`slim` of a 200's JSON object (what the cache keeps), `{"status": N}` for statuses
        in `ok`, None for 404 or a failure."""
        remembered = self._cache.get(f"{hub}:{key}")
        if remembered is not MISS:
            return remembered
        if hub in self.warnings:
            return None
        try:
            answer = await self._http.get(url, headers={"Accept": "application/json"})
            if answer.status == 200:
                body = answer.json(f"the answer from {redact_url(url)}")
                value = slim(body) if isinstance(body, dict) else None
            elif answer.status == 404:
                value = None
            elif answer.status in ok:
                value = {"status": answer.status}
            else:
                raise CatalogError(f"{redact_url(url)} answered HTTP {answer.status}")
        except CatalogError as exc:
            self.warnings[hub] = f"{hub} did not answer ({exc.message}); it was not asked further"
            return None
        self._cache.put(f"{hub}:{key}", value)
        return value

    async def civitai_by_hash(self, sha256: str) -> CivitaiFile | None:
        """The Civitai version holding a file with this sha256, if Civitai knows it."""
        base = self.hubs.civitai.rstrip("/")
        body = await self._get(
            "civitai",
            f"hash:{sha256}",
            f"{base}/api/v1/model-versions/by-hash/{sha256}",
            slim=lambda b: {k: b.get(k) for k in ("id", "modelId", "files")},
        )
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            return None
        name, digest = "", None
        for file in body.get("files") or []:
            hashes = file.get("hashes") if isinstance(file, dict) else None
            found = hashes.get("SHA256") if isinstance(hashes, dict) else None
            if isinstance(found, str) and found.lower() == sha256.lower():
                name, digest = str(file.get("name") or ""), found.lower()
                break
        model = body.get("modelId")
        return CivitaiFile(model if isinstance(model, int) else None, body["id"], name, digest)

    async def civitai_latest_version(self, model_id: int) -> int | None:
        """The newest version of a Civitai model (the API lists versions newest first)."""
        base = self.hubs.civitai.rstrip("/")
        body = await self._get(
            "civitai", f"model:{model_id}", f"{base}/api/v1/models/{model_id}", slim=_newest
        )
        version = body.get("latest") if isinstance(body, dict) else None
        return version if isinstance(version, int) else None

    async def hf_needs_token(self, repo: str) -> bool | None:
        """Whether downloading from `repo` needs a token (gated or private); None: unknown."""
        base = self.hubs.huggingface.rstrip("/")
        body = await self._get(
            "Hugging Face",
            f"repo:{repo}",
            f"{base}/api/models/{repo}",
            slim=lambda b: {k: b.get(k) for k in ("gated", "private")},
            ok=(401, 403),
        )
        if not isinstance(body, dict):
            return None
        if body.get("status") in (401, 403):
            return True
        return bool(body.get("gated")) or bool(body.get("private"))

    async def civitai_version(self, version_id: int) -> CivitaiVersion | None:
        """A Civitai model version (its model's type and its files), if Civitai knows it."""
        base = self.hubs.civitai.rstrip("/")
        body = await self._get(
            "civitai",
            f"version:{version_id}",
            f"{base}/api/v1/model-versions/{version_id}",
            slim=_version_slim,
        )
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            return None
        files = tuple(
            CivitaiVersionFile(f["name"], f["sha256"], f["primary"], f["type"])
            for f in body.get("files") or []
        )
        model = body.get("modelId")
        return CivitaiVersion(
            model if isinstance(model, int) else None, body["id"], body.get("type") or "", files
        )
