"""Which folder of the backup repository belongs to which instance or server.

Each source gets one folder with a readable name (the instance's name, else its Vast id; for a
plain URL, `host_port`), kept for its whole life: a renamed instance keeps its folder, and a new
instance that takes a destroyed one's name gets a folder of its own. The mapping lives in the
repository itself, in `comfyfleet-index.json` at its root, so a clone carries it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from comfyfleet.errors import BackupError, UsageError
from comfyfleet.services.targets import Target
from comfyfleet.state.rows import InstanceRow, tracking_tag

INDEX_FILE = "comfyfleet-index.json"
INDEX_FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {INDEX_FILE.lower(), ".git", ".gitignore", ".gitattributes"}


@dataclass(frozen=True)
class Source:
    """What a backup reads from: an instance (known by its tracking tag) or a ComfyUI URL.

    `record` is what the index keeps about it; it holds only stable facts (never a port or a
    time), so an unchanged instance never changes the index.
    """

    key: str
    display: str
    folder_hint: str
    target: Target = field(repr=False)
    record: dict[str, Any] = field(default_factory=dict)


def instance_source(row: InstanceRow, target: Target, profile: str) -> Source:
    tag = tracking_tag(row.label) or row.label
    ident = str(row.vast_id) if row.vast_id is not None else f"local-{row.id}"
    display = f"{row.name} (instance {ident})" if row.name else f"instance {ident}"
    record = {
        "kind": "instance",
        "tag": tag,
        "profile": profile,
        "instance_id": row.vast_id,
        "name": row.name,
    }
    return Source(f"instance:{tag}", display, row.name or ident, target, record)


def url_source(target: Target) -> Source:
    parts = urlsplit(target.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hint = f"{parts.hostname}_{port}" + (parts.path.replace("/", "_") if parts.path else "")
    return Source(f"url:{target.url}", target.url, hint, target, {"kind": "url", "url": target.url})


def _key_of(record: dict[str, Any]) -> str | None:
    if record.get("kind") == "instance" and record.get("tag"):
        return f"instance:{record['tag']}"
    if record.get("kind") == "url" and record.get("url"):
        return f"url:{record['url']}"
    return None


def _clean(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip("._-")
    return cleaned[:80] or "server"


@dataclass
class FolderIndex:
    """The folder -> source mapping of one repository."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes | None, where: str = INDEX_FILE) -> FolderIndex:
        if data is None:
            return cls()
        try:
            body = json.loads(data)
            folders = body["folders"]
            if not isinstance(folders, dict):
                raise TypeError("folders is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(
                f"{where} in the backup repository is damaged ({exc})",
                hint=f"restore {INDEX_FILE} from the repository's history",
            ) from exc
        return cls({str(k): dict(v) for k, v in folders.items() if isinstance(v, dict)})

    def to_bytes(self) -> bytes:
        body = {"format": INDEX_FORMAT, "folders": self.folders}
        return (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    def folder_of(self, source: Source) -> str | None:
        for folder, record in self.folders.items():
            if _key_of(record) == source.key:
                return folder
        return None

    def assign(self, source: Source) -> str:
        """The source's folder (a new one if it has none); its record is brought up to date."""
        folder = self.folder_of(source)
        if folder is None:
            folder = base = _clean(source.folder_hint)
            ident = source.record.get("instance_id")
            if folder.lower() in _RESERVED or folder in self.folders:
                folder = f"{base}-{ident}" if ident is not None else f"{base}-2"
            count = 2
            while folder.lower() in _RESERVED or folder in self.folders:
                count += 1
                folder = f"{base}-{count}"
        self.folders[folder] = dict(source.record)
        return folder

    def require(self, folder: str, repo: str) -> None:
        """`folder` must be one of the index's folders (a clear error lists them)."""
        if folder not in self.folders:
            raise UsageError(
                f"the backup repository {repo} has no folder {folder!r}",
                hint=self.listing() or "it holds no backups yet: run comfyfleet backup first",
            )

    def listing(self) -> str:
        if not self.folders:
            return ""
        shown = ", ".join(f"{f} ({describe_record(r)})" for f, r in sorted(self.folders.items()))
        return f"its folders: {shown}"


def describe_record(record: dict[str, Any]) -> str:
    if record.get("kind") == "url":
        return str(record.get("url"))
    name = record.get("name")
    ident = record.get("instance_id")
    return f"instance {ident}" + (f" '{name}'" if name else "")
