"""Where each model file a workflow needs can come from.

For a wanted file (folder key + name, with the URL and hash a UI workflow's `models`
metadata may carry) sources are gathered in this order, the first being preferred:

1. the user's manifest (see `manifest`): what the user wrote wins (a mirror, a fixed URL);
2. the workflow's own URL (and its sha256, when the metadata has one);
3. ComfyUI-Manager's `model-list.json`, matched by file name (and folder, and subfolder
   when that settles which of several same-named entries is meant);
4. Hugging Face and Civitai: sources written as `hf://` or Civitai URLs are rebuilt on the
   configured hubs, and a file with a known sha256 and no source yet is looked up on
   Civitai by hash (done by `Catalogs`, which also asks Hugging Face whether a repo is
   gated). Searching Hugging Face by file name is not done: names collide too often.

The destination is always the workflow's own name for the file: that is what it will look
for. A name or URL unfit for a remote command is reported as a problem, never used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyfleet.catalog.manifest import Manifest
from comfyfleet.catalog.sources import (
    CivitaiRef,
    Hubs,
    ModelSource,
    Ref,
    SourceOrigin,
    check_filename,
    make_source,
    parse_ref,
)
from comfyfleet.errors import CatalogFormatError, UnsafeSource
from comfyfleet.graph.model_folders import canonical_folder

#: Folder key used when the folder of a file cannot be known (as in comfy.workflow.deps).
UNKNOWN_FOLDER = "unknown"

#: ComfyUI-Manager's `model_dir_name_map`: a model-list `type` -> folder for save_path default.
TYPE_FOLDERS: Mapping[str, str] = {
    "checkpoints": "checkpoints",
    "checkpoint": "checkpoints",
    "unclip": "checkpoints",
    "text_encoders": "text_encoders",
    "clip": "text_encoders",
    "vae": "vae",
    "lora": "loras",
    "t2i-adapter": "controlnet",
    "t2i-style": "controlnet",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "gligen": "gligen",
    "upscale": "upscale_models",
    "embedding": "embeddings",
    "embeddings": "embeddings",
    "unet": "diffusion_models",
    "diffusion_model": "diffusion_models",
}


@dataclass(frozen=True)
class WantedModel:
    """A model file a workflow needs, as the catalogs are asked about it."""

    folder: str
    name: str
    url: str | None = None
    hash: str | None = None
    hash_type: str | None = None

    @property
    def sha256(self) -> str | None:
        if self.hash and (self.hash_type or "sha256").lower() == "sha256" and len(self.hash) == 64:
            return self.hash.lower()
        return None


@dataclass(frozen=True)
class ModelResolution:
    """The sources found for one wanted file, and what stood in the way."""

    folder: str
    name: str
    sources: tuple[ModelSource, ...] = ()
    problems: tuple[str, ...] = field(default=())

    @property
    def resolved(self) -> bool:
        return bool(self.sources)


@dataclass(frozen=True)
class ListedModel:
    """One entry of ComfyUI-Manager's model list."""

    name: str
    filename: str
    url: str
    folder: str
    subdir: str = ""
    type: str = ""

    @property
    def path(self) -> str:
        return f"{self.subdir}/{self.filename}" if self.subdir else self.filename


def check_model_list(data: Any) -> None:
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not models:
        raise CatalogFormatError("model-list.json has no `models` list")


def _listed(entry: Mapping[str, Any]) -> ListedModel | None:
    filename, url = entry.get("filename"), entry.get("url")
    save_path, kind = str(entry.get("save_path") or "default"), str(entry.get("type") or "")
    if not isinstance(filename, str) or not isinstance(url, str) or filename == "<huggingface>":
        return None  # `<huggingface>` entries are whole repository snapshots, not files
    if save_path == "default":
        folder, subdir = TYPE_FOLDERS.get(kind.lower(), "etc"), ""
    else:
        parts = [p for p in save_path.replace("\\", "/").split("/") if p]
        if not parts or ".." in parts or save_path.startswith(("/", "custom_nodes")):
            return None  # ComfyUI-Manager would not place these in a model folder either
        folder, subdir = canonical_folder(parts[0]), "/".join(parts[1:])
    return ListedModel(str(entry.get("name") or filename), filename, url, folder, subdir, kind)


class ModelIndex:
    """ComfyUI-Manager's model list, by file name."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._by_name: dict[str, list[ListedModel]] = {}
        for entry in data.get("models") or []:
            listed = _listed(entry) if isinstance(entry, dict) else None
            if listed is not None:
                self._by_name.setdefault(listed.filename, []).append(listed)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_name.values())

    def find(self, folder: str, name: str) -> tuple[ListedModel | None, str | None]:
        """The one entry meant by `folder/name`, or None and why none was picked."""
        name = name.replace("\\", "/")
        same = self._by_name.get(name.rsplit("/", 1)[-1], [])
        if folder != UNKNOWN_FOLDER:
            same = [m for m in same if m.folder == folder]
        exact = [m for m in same if m.path == name]
        for tier in (exact, same):
            urls = {m.url for m in tier}
            if len(urls) == 1:
                return tier[0], None
            if len(urls) > 1:
                return None, (
                    f"{len(urls)} entries of ComfyUI-Manager's model list are named "
                    f"{name.rsplit('/', 1)[-1]!r}; none was picked"
                )
        return None, None


@dataclass
class Gathered:
    """The sources found so far for one wanted file (see `gather`)."""

    wanted: WantedModel
    hubs: Hubs
    sources: list[ModelSource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Civitai refs without a version, as (ref, origin, folder, sha256), for an API look-up
    pending: list[tuple[CivitaiRef, SourceOrigin, str, str | None]] = field(default_factory=list)

    def add(self, ref: Ref, origin: SourceOrigin, folder: str, sha256: str | None) -> None:
        """Add the source `ref` names (unusable ones become problems, repeats are dropped)."""
        if folder == UNKNOWN_FOLDER:
            self.problems.append(f"the model folder of {self.wanted.name!r} is unknown ({origin})")
            return
        if isinstance(ref, CivitaiRef) and ref.version_id is None:
            self.pending.append((ref, origin, folder, sha256))
            return
        try:
            source = make_source(
                ref, folder=folder, filename=self.wanted.name, hubs=self.hubs, origin=origin,
                sha256=sha256,
            )  # fmt: skip
        except UnsafeSource as exc:
            self.problems.append(f"{origin} source skipped: {exc.message}")
            return
        if all(s.url != source.url for s in self.sources):
            self.sources.append(source)

    def attempt(self, text: str, origin: SourceOrigin, folder: str, sha256: str | None) -> None:
        """Add the source a text names, when it parses."""
        try:
            ref = parse_ref(text, self.hubs)
        except UnsafeSource as exc:
            self.problems.append(f"{origin} source skipped: {exc.message}")
            return
        self.add(ref, origin, folder, sha256)

    def result(self, needs_token: Mapping[str, bool] | None = None) -> ModelResolution:
        """The resolution; `needs_token` (url -> bool) corrects what the hubs answered."""
        marks = needs_token or {}
        sources = tuple(
            dataclasses.replace(s, needs_token=marks[s.url]) if s.url in marks else s
            for s in self.sources
        )
        problems = tuple(dict.fromkeys(self.problems))
        return ModelResolution(self.wanted.folder, self.wanted.name, sources, problems)


def gather(
    wanted: WantedModel, index: ModelIndex | None, manifest: Manifest, hubs: Hubs
) -> Gathered:
    """Sources 1-3 for `wanted` (see the module docstring), without asking any hub."""
    out = Gathered(wanted, hubs)
    try:
        check_filename(wanted.name)
    except UnsafeSource as exc:
        out.problems.append(exc.message)
        return out
    listed, note = index.find(wanted.folder, wanted.name) if index else (None, None)
    entry = manifest.find(wanted.folder, wanted.name)
    folder = wanted.folder
    if folder == UNKNOWN_FOLDER:  # the list or the manifest may know where it goes
        folder = (listed.folder if listed else None) or (entry.folder if entry else None) or folder
    if entry is not None:
        out.add(entry.ref, "manifest", folder, entry.sha256 or wanted.sha256)
    if wanted.url:
        out.attempt(wanted.url, "workflow", folder, wanted.sha256)
    if listed is not None:
        out.attempt(listed.url, "model-list", folder, wanted.sha256)
    elif note:
        out.problems.append(note)
    return out
