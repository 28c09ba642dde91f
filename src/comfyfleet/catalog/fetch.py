"""Catalog files fetched over HTTP, cached on disk, with the shipped copy as the last resort.

For each catalog (ComfyUI-Manager's extension-node-map, custom-node-list, model-list):

1. a cached copy younger than the TTL is used as is;
2. otherwise the URL is asked, conditionally (`If-None-Match` / `If-Modified-Since`) when a
   cached copy exists: 304 keeps it (and restarts its TTL), 200 replaces it;
3. when that fails (network, HTTP error, not the catalog's format) the cached copy is used
   even if stale, else the copy shipped inside the package — and the result carries a
   warning saying so. A fallback is never silent.

With `offline`, nothing is asked: the cached copy (any age), else the shipped one.
Cache layout: `<dir>/<name>-<sha of url>.json` plus `.meta.json` (url, etag, last-modified,
fetched_at); both are written atomically, so a crash leaves the old copy intact.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from comfyfleet.catalog.http import CatalogHttp
from comfyfleet.errors import CatalogError, CatalogFormatError
from comfyfleet.util.redact import redact_url

Origin = Literal["network", "cache", "shipped"]

#: catalog name -> the file name ComfyUI-Manager publishes (and this package ships, gzipped).
CATALOG_FILES = {
    "node-map": "extension-node-map.json",
    "node-list": "custom-node-list.json",
    "model-list": "model-list.json",
}

Validator = Callable[[Any], None]


@dataclass(frozen=True)
class Provenance:
    """Where a catalog's content came from, for reports."""

    name: str
    url: str
    origin: Origin
    fetched_at: float | None = None  # when the cached or fetched copy was last confirmed
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": redact_url(self.url),
            "origin": self.origin,
            "fetched_at": self.fetched_at,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class Fetched:
    data: Any
    provenance: Provenance


def shipped(name: str) -> Any:
    """The copy of catalog `name` shipped with comfyfleet (parsed JSON)."""
    file = CATALOG_FILES[name] + ".gz"
    try:
        raw = resources.files("comfyfleet.catalog").joinpath("data", file).read_bytes()
        return json.loads(gzip.decompress(raw))
    except (OSError, ValueError) as exc:
        raise CatalogFormatError(
            f"the shipped copy of {CATALOG_FILES[name]} is missing or broken ({exc})",
            hint="reinstall comfyfleet",
        ) from exc


class CatalogStore:
    """Fetches catalogs through the cache; see the module docstring for the order."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        http: CatalogHttp | None,
        ttl: float,
        offline: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.cache_dir = cache_dir
        self._http = http
        self._ttl = ttl
        self._offline = offline or http is None
        self._now = now

    def _paths(self, name: str, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()[:12]
        base = self.cache_dir / f"{name}-{key}"
        return base.with_suffix(".json"), base.with_suffix(".meta.json")

    def _read_cache(self, name: str, url: str, validate: Validator) -> tuple[Any, dict[str, Any]]:
        data_path, meta_path = self._paths(name, url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = json.loads(data_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or meta.get("url") != url:
                return None, {}
            validate(data)
        except (OSError, ValueError, CatalogError):
            return None, {}  # no cache, or a damaged one: as if there were none
        return data, meta

    def _write_cache(self, name: str, url: str, body: bytes, meta: dict[str, Any]) -> None:
        data_path, meta_path = self._paths(name, url)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(data_path, body)
            _atomic_write(meta_path, json.dumps(meta, sort_keys=True).encode())
        except OSError:
            pass  # a cache we cannot write only costs a later download

    def _touch(self, name: str, url: str, meta: dict[str, Any]) -> None:
        _, meta_path = self._paths(name, url)
        with contextlib.suppress(OSError):
            _atomic_write(meta_path, json.dumps(meta, sort_keys=True).encode())

    async def get(self, name: str, url: str, validate: Validator) -> Fetched:
        """The catalog `name` from `url` (validated by `validate`), through the cache."""
        cached, meta = self._read_cache(name, url, validate)
        fetched_at = meta.get("fetched_at") if cached is not None else None
        if self._offline:
            if cached is not None:
                return Fetched(cached, Provenance(name, url, "cache", fetched_at))
            return Fetched(shipped(name), Provenance(name, url, "shipped"))
        if isinstance(fetched_at, int | float) and self._now() - fetched_at < self._ttl:
            return Fetched(cached, Provenance(name, url, "cache", fetched_at))
        try:
            return await self._download(name, url, validate, cached, meta)
        except CatalogError as exc:
            reason = exc.message
        if cached is not None:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(fetched_at or 0)))
            warning = (
                f"could not refresh {CATALOG_FILES[name]} ({reason}); "
                f"using the cached copy from {when}"
            )
            return Fetched(cached, Provenance(name, url, "cache", fetched_at, warning))
        warning = (
            f"could not fetch {CATALOG_FILES[name]} ({reason}); "
            "using the copy shipped with comfyfleet, which may be out of date"
        )
        return Fetched(shipped(name), Provenance(name, url, "shipped", None, warning))

    async def _download(
        self, name: str, url: str, validate: Validator, cached: Any, meta: dict[str, Any]
    ) -> Fetched:
        assert self._http is not None
        headers: dict[str, str] = {}
        if cached is not None:
            if meta.get("etag"):
                headers["If-None-Match"] = str(meta["etag"])
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = str(meta["last_modified"])
        answer = await self._http.get(url, headers=headers)
        now = self._now()
        if answer.status == 304 and cached is not None:
            self._touch(name, url, {**meta, "fetched_at": now})
            return Fetched(cached, Provenance(name, url, "cache", now))
        if answer.status != 200:
            raise CatalogError(f"{redact_url(url)} answered HTTP {answer.status}")
        data = answer.json(f"{CATALOG_FILES[name]} from {redact_url(url)}")
        validate(data)
        new_meta = {
            "url": url,
            "etag": answer.headers.get("etag"),
            "last_modified": answer.headers.get("last-modified"),
            "fetched_at": now,
        }
        self._write_cache(name, url, answer.body, new_meta)
        return Fetched(data, Provenance(name, url, "network", now))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
