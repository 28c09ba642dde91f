"""The environment lock: what makes an instance what it is, as a typed value and a JSON file.

`comfyfleet env lock ID -o FILE` writes it; `comfyfleet env apply ID FILE` reproduces it.
The file is JSON (UTF-8, keys sorted, two-space indent), format version 1:

    {
      "format": "comfyfleet-env-lock",
      "version": 1,
      "created_at": "2025-06-01T12:00:00Z",
      "instance": {"name": "studio", "vast_id": 123, "gpu": "RTX 4090"},
      "comfyui": {"commit": "9f1c…" | null, "origin": "https://github.com/…" | null,
                  "version": "0.3.64" | null, "python": "3.12.3" | null},
      "custom_nodes": [{"name": "pack" | "pack.disabled", "kind": "dir" | "file" | "other",
                        "url": "https://…" | null, "commit": "40 hex" | null,
                        "dirty": false | null}],
      "protected": {"torch": "2.8.0+cu128", "xformers": "0.0.32", …},
      "pip": ["accelerate==1.10.1", "-e /srv/x", …],
      "models": [{"path": "checkpoints/x.safetensors", "name": "x.safetensors",
                  "folder": "checkpoints", "size": 123, "sha256": "64 hex",
                  "source": "hf://…" | null, "hashed": "index" | "instance"}],
      "notes": ["…"]
    }

`comfyui.commit` is the git HEAD of the ComfyUI folder (null when it is no git checkout;
`version` is then what /system_stats says). `custom_nodes` holds every entry of the folder,
`.disabled` ones included; a pack without `url`/`commit` is no git checkout. `protected` are
the versions of the torch guard's packages; `pip` is `pip freeze` of the ComfyUI venv as it
printed it (comments left out). `models` are every file under models/ with its sha256: from
comfyfleet's index (`hashed: "index"`) or computed on the instance when the index had none
(`"instance"`); `source` is where comfyfleet pulled it from (null: not placed by comfyfleet).
`path` is relative to models/ (its first segment the folder there, `clip` or `text_encoders`
as the file was found), `name` relative to that folder, `folder` ComfyUI's folder key.

Reading a lock checks every value that could reach a remote command (URLs, commits, entry
names, model paths, sha256), so a tampered file is refused before anything is done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from comfyfleet.catalog import check_filename, check_sha256
from comfyfleet.errors import ComfyfleetError, UsageError
from comfyfleet.remote.git import check_entry_name, check_git_url, check_ref

FORMAT = "comfyfleet-env-lock"
VERSION = 1
DISABLED = ".disabled"
Kind = Literal["dir", "file", "other"]
HashedBy = Literal["index", "instance"]
KINDS: dict[str, Kind] = {"dir": "dir", "file": "file", "other": "other"}
HASHED_BY: dict[str, HashedBy] = {"index": "index", "instance": "instance"}


@dataclass(frozen=True)
class ComfyState:
    commit: str | None = None
    origin: str | None = None
    version: str | None = None
    python: str | None = None


@dataclass(frozen=True)
class PackState:
    """One entry of custom_nodes."""

    name: str  # as in the folder, `.disabled` included
    kind: Kind = "dir"
    url: str | None = None
    commit: str | None = None
    dirty: bool | None = None

    @property
    def disabled(self) -> bool:
        return self.name.endswith(DISABLED)

    @property
    def base(self) -> str:
        """The name without `.disabled`: the same pack, enabled or not."""
        return self.name[: -len(DISABLED)] if self.disabled else self.name

    @property
    def reproducible(self) -> bool:
        return self.url is not None and self.commit is not None

    def describe(self) -> str:
        if self.commit is None:
            return f"{self.kind}, not a git checkout"
        state = " (disabled)" if self.disabled else ""
        return f"{self.commit[:12]}{state}" + (" with local changes" if self.dirty else "")


@dataclass(frozen=True)
class ModelState:
    """One model file, by its path under models/."""

    path: str  # `<folder under models/>/<name>`
    folder: str  # ComfyUI's folder key
    size: int
    sha256: str | None = None
    source: str | None = None
    hashed: HashedBy = "index"

    @property
    def directory(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.path.split("/", 1)[1]


@dataclass(frozen=True)
class EnvLock:
    """An instance's environment (what a lock file holds, and what is found on a target)."""

    comfyui: ComfyState = ComfyState()
    custom_nodes: tuple[PackState, ...] = ()
    protected: Mapping[str, str] = field(default_factory=dict)
    pip: tuple[str, ...] = ()
    models: tuple[ModelState, ...] = ()
    instance: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created_at": self.created_at,
            "instance": dict(self.instance),
            "comfyui": {
                "commit": self.comfyui.commit,
                "origin": self.comfyui.origin,
                "version": self.comfyui.version,
                "python": self.comfyui.python,
            },
            "custom_nodes": [
                {"name": p.name, "kind": p.kind, "url": p.url, "commit": p.commit, "dirty": p.dirty}
                for p in self.custom_nodes
            ],
            "protected": dict(sorted(self.protected.items())),
            "pip": list(self.pip),
            "models": [
                {
                    "path": m.path,
                    "name": m.name,
                    "folder": m.folder,
                    "size": m.size,
                    "sha256": m.sha256,
                    "source": m.source,
                    "hashed": m.hashed,
                }
                for m in self.models
            ],
            "notes": list(self.notes),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- reading -------------------------------------------------------------------------------


class _Bad(Exception):
    """A value of the file that is unusable; becomes a UsageError naming the file."""


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise _Bad(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{where} is not a list")
    return value


def _checked(check: Any, value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        return str(check(value))
    except ComfyfleetError as exc:
        raise _Bad(f"{where}: {exc.message}") from exc


def _pack(item: Any, i: int) -> PackState:
    where = f"custom_nodes[{i}]"
    data = _obj(item, where)
    name = _checked(check_entry_name, _get(data, "name", str, where), f"{where}.name")
    if name is None:
        raise _Bad(f"{where} has no name")
    kind = _get(data, "kind", str, where) or "dir"
    if kind not in KINDS:
        raise _Bad(f"{where}.kind is {kind!r}")
    return PackState(
        name,
        KINDS[kind],
        _checked(check_git_url, _get(data, "url", str, where), f"{where}.url"),
        _checked(check_ref, _get(data, "commit", str, where), f"{where}.commit"),
        _get(data, "dirty", bool, where),
    )


def _model(item: Any, i: int) -> ModelState:
    where = f"models[{i}]"
    data = _obj(item, where)
    path = _checked(check_filename, _get(data, "path", str, where), f"{where}.path")
    if path is None or "/" not in path:
        raise _Bad(f"{where}.path must be FOLDER/NAME")
    name = _get(data, "name", str, where)
    if name is not None and name != path.split("/", 1)[1]:
        raise _Bad(f"{where}.name {name!r} is not the name in its path {path!r}")
    size = _get(data, "size", int, where)
    hashed = _get(data, "hashed", str, where) or "index"
    if hashed not in HASHED_BY:
        raise _Bad(f"{where}.hashed is {hashed!r}")
    return ModelState(
        path,
        _get(data, "folder", str, where) or path.split("/", 1)[0],
        int(size or 0),
        _checked(check_sha256, _get(data, "sha256", str, where), f"{where}.sha256"),
        _get(data, "source", str, where),
        HASHED_BY[hashed],
    )


def parse_lock(text: str, source: str) -> EnvLock:
    """The lock in `text` (read from `source`); UsageError naming what is wrong."""
    try:
        data = _obj(json.loads(text), "the file")
        if data.get("format") != FORMAT:
            raise _Bad(f'it is not a comfyfleet environment lock (no "format": {FORMAT!r})')
        version = data.get("version")
        if version != VERSION:
            raise _Bad(
                f"it has format version {version!r}; this comfyfleet reads version {VERSION}"
            )
        comfy = _obj(data.get("comfyui") or {}, "comfyui")
        protected = _obj(data.get("protected") or {}, "protected")
        if not all(isinstance(v, str) for v in protected.values()):
            raise _Bad("protected must map package names to version strings")
        pip = _list(data.get("pip"), "pip")
        if not all(isinstance(line, str) for line in pip):
            raise _Bad("pip must be a list of strings")
        return EnvLock(
            comfyui=ComfyState(
                _checked(check_ref, _get(comfy, "commit", str, "comfyui"), "comfyui.commit"),
                _get(comfy, "origin", str, "comfyui"),
                _get(comfy, "version", str, "comfyui"),
                _get(comfy, "python", str, "comfyui"),
            ),
            custom_nodes=tuple(
                _pack(p, i) for i, p in enumerate(_list(data.get("custom_nodes"), "custom_nodes"))
            ),
            protected=dict(protected),
            pip=tuple(pip),
            models=tuple(_model(m, i) for i, m in enumerate(_list(data.get("models"), "models"))),
            instance=dict(_obj(data.get("instance") or {}, "instance")),
            created_at=_get(data, "created_at", str, "the file"),
            notes=tuple(str(n) for n in _list(data.get("notes"), "notes")),
        )
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"lock file {source} is not JSON: {exc}",
            hint="write one with: comfyfleet env lock ID -o FILE",
        ) from exc
    except _Bad as exc:
        raise UsageError(
            f"lock file {source} cannot be used: {exc}",
            hint="write a fresh one with: comfyfleet env lock ID -o FILE",
        ) from exc
