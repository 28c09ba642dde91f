"""The user's own model manifest: file names -> where to download them.

TOML (or JSON with the same shape); keys are a file name, or `FOLDER/NAME` to match only in
that folder:

    [models]
    "my_style.safetensors" = "https://example.com/files/my_style.safetensors"

    [models."loras/detail.safetensors"]
    source = "civitai:12345@67890"          # or url = ...; any source text (see sources)
    sha256 = "0f3c...e9"
    folder = "loras"                         # where it goes when the workflow does not say

Default path: `<config dir>/models.toml` (used when it exists); `[catalog] models_manifest`
names another file, which must then exist. A bad entry is an error naming the file, the key
and the fix: a manifest is the user's word, so nothing in it is skipped silently.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyfleet.catalog.sources import Hubs, Ref, check_filename, check_sha256, parse_ref
from comfyfleet.errors import UnsafeSource, UsageError
from comfyfleet.graph.model_folders import canonical_folder


@dataclass(frozen=True)
class ManifestEntry:
    key: str  # as written
    ref: Ref
    sha256: str | None = None
    folder: str | None = None


@dataclass(frozen=True)
class Manifest:
    """Entries by key; `find` matches `FOLDER/NAME`, then `NAME`, then the base name."""

    path: Path | None = None
    entries: Mapping[str, ManifestEntry] | None = None

    def find(self, folder: str, name: str) -> ManifestEntry | None:
        entries = self.entries or {}
        name = name.replace("\\", "/")
        for key in (f"{folder}/{name}", name, name.rsplit("/", 1)[-1]):
            if key in entries:
                return entries[key]
        return None


def load_manifest(path: Path | None, hubs: Hubs, *, required: bool) -> Manifest:
    """Read the manifest at `path` (missing and not `required`: an empty one)."""
    if path is None:
        return Manifest()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        if not required:
            return Manifest()
        raise UsageError(
            f"models manifest {path} does not exist",
            hint="create it, or fix [catalog] models_manifest "
            "(COMFYFLEET_CATALOG__MODELS_MANIFEST)",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read models manifest {path}: {exc}") from exc
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise UsageError(f"models manifest {path} is not valid {kind}: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise UsageError(
            f"models manifest {path} has no [models] table",
            hint='write [models] then "FILE.safetensors" = "URL" lines',
        )
    entries = {str(k): _entry(path, str(k), v, hubs) for k, v in models.items()}
    return Manifest(path, entries)


def _entry(path: Path, key: str, value: Any, hubs: Hubs) -> ManifestEntry:
    where = f"models manifest {path}, entry {key!r}"
    if isinstance(value, str):
        value = {"source": value}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a source text or a table", hint=_ENTRY_HINT)
    unknown = set(value) - {"source", "url", "sha256", "folder"}
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}", hint=_ENTRY_HINT)
    source = value.get("source", value.get("url"))
    if not isinstance(source, str) or not source.strip():
        raise UsageError(f"{where}: no source", hint=_ENTRY_HINT)
    folder = value.get("folder")
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise UsageError(f"{where}: folder must be a folder name such as loras", hint=_ENTRY_HINT)
    try:
        check_filename(key)
        ref = parse_ref(source, hubs)
        sha = value.get("sha256")
        digest = check_sha256(sha) if isinstance(sha, str) else None
        if sha is not None and not isinstance(sha, str):
            raise UnsafeSource("sha256 must be a string of 64 hexadecimal digits")
    except UnsafeSource as exc:
        raise UsageError(f"{where}: {exc.message}", hint=exc.hint or _ENTRY_HINT) from exc
    return ManifestEntry(key, ref, digest, canonical_folder(folder.strip()) if folder else None)


_ENTRY_HINT = 'write "NAME" = "URL", or a table with source (or url), sha256 and folder'
