"""Pulling one model file onto an instance over an open SSH connection.

    result = await pull_on(conn, layout, source, tokens=tokens, settings=settings.downloads,
                           clock=clock, on_progress=print)

Steps, each on the instance: look at the destination (a file already there whose sha256, or
recorded source and size, match is kept: "present", nothing downloaded); HEAD the URL (size,
Hugging Face's sha256, auth failures before anything is written); check free space against
what is left to fetch; download into `<dest>.part`, continuing a `.part` an interrupted pull
of the same source left (retried with backoff after drops and stalls); `sha256sum` it; move it
into place and record it in the index only when it matches the expected sha256. A mismatch or a
full disk deletes the `.part`; a dropped transfer keeps it for the next pull to continue.
Nothing is ever placed under the final name unverified.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from comfyfleet.catalog import ModelSource
from comfyfleet.config import DownloadSettings
from comfyfleet.errors import ChecksumMismatch, DiskFull, DownloadFailed, UsageError
from comfyfleet.remote import download
from comfyfleet.remote.download import DownloadRequest, HeadAnswer
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.remote.modelfiles import FileState, ModelFiles, record_holds
from comfyfleet.remote.ssh import SshConnection
from comfyfleet.services.models_head import TRANSIENT_EXITS, ask_server, refused
from comfyfleet.services.models_source import (
    Tokens,
    auth_headers,
    folder_dir,
    shown_source,
    source_id,
)
from comfyfleet.util.clock import Clock

MiB = 1024 * 1024
WRITE_ERROR = 23
RANGE_ERROR = 33

Stage = Literal["check", "download", "retry", "verify", "done"]


@dataclass(frozen=True)
class PullProgress:
    """What a pull is doing: a stage, a message, and bytes for the download stage."""

    stage: Stage
    message: str = ""
    done: int = 0
    total: int | None = None
    speed: float | None = None  # bytes per second, as curl measures it


Progress = Callable[[PullProgress], None]


@dataclass(frozen=True)
class PullResult:
    """A model file in place on an instance."""

    path: str  # relative to models/
    folder: str  # ComfyUI's folder key
    size: int
    sha256: str
    source: str  # shown (credentials masked)
    status: Literal["downloaded", "present"]
    verified: bool  # its sha256 matched one given or known from the source
    downloaded: int = 0  # bytes fetched by this pull
    resumed_from: int = 0  # bytes of a `.part` this pull continued
    attempts: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "folder": self.folder,
            "size": self.size,
            "sha256": self.sha256,
            "source": self.source,
            "status": self.status,
            "verified": self.verified,
            "downloaded": self.downloaded,
            "resumed_from": self.resumed_from,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 2),
        }


def models_root(layout: InstanceLayout) -> PurePosixPath:
    return layout.comfy_dir / "models"


def model_files(conn: SshConnection, layout: InstanceLayout) -> ModelFiles:
    """The instance's model files, handled with its ComfyUI Python (else `python3`)."""
    python = str(layout.python) if layout.python else "python3"
    return ModelFiles(conn, python=python, root=models_root(layout))


def size_text(n: int | None) -> str:
    """`n` bytes for people: 1.5 GiB, 300.0 MiB, 12 B."""
    if n is None:
        return "?"
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class _Pull:
    """One pull: what, where, and how it reports."""

    def __init__(
        self,
        conn: SshConnection,
        layout: InstanceLayout,
        source: ModelSource,
        *,
        tokens: Tokens,
        settings: DownloadSettings,
        clock: Clock,
        on_progress: Progress,
        directory: str | None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.clock = clock
        self.emit = on_progress
        self.rel = f"{directory or folder_dir(source.folder)}/{source.filename}"
        self.where = f"models/{self.rel} on {conn.target.describe()}"
        self.conn = conn
        self.files = model_files(conn, layout)
        self.request = DownloadRequest(
            source.url,
            auth_headers(source, tokens),
            connect_timeout=settings.connect_timeout,
            stall_timeout=settings.stall_timeout,
        )
        self.shown = shown_source(source)
        self.sid = source_id(source)
        self.started = time.monotonic()  # the transfer takes real time, even in the sandbox
        self.attempts = 0
        self.resumed_from = 0
        self.downloaded = 0

    def _result(
        self, status: Literal["downloaded", "present"], entry: Mapping[str, Any]
    ) -> PullResult:
        return PullResult(
            path=self.rel,
            folder=self.source.folder,
            size=int(entry["size"]),
            sha256=str(entry["sha256"]),
            source=self.shown,
            status=status,
            verified=bool(entry.get("verified")),
            downloaded=self.downloaded,
            resumed_from=self.resumed_from,
            attempts=self.attempts,
            seconds=time.monotonic() - self.started,
        )

    def _entry(self, digest: str, verified: bool) -> dict[str, Any]:
        return {
            "sha256": digest,
            "source": self.shown,
            "source_id": self.sid,
            "kind": self.source.kind,
            "folder": self.source.folder,
            "verified": verified,
            "pulled_at": round(self.clock.now(), 3),
        }

    async def run(self) -> PullResult:
        self.emit(PullProgress("check", f"checking models/{self.rel}"))
        state = await self.files.state(self.rel)
        if state.exists:
            kept = await self._existing(state)
            if kept is not None:
                return kept
            answer = await ask_server(self.conn, self.request, self.source)
            kept = await self._existing(state, answer.sha256)
            if kept is not None:
                return kept
            raise self._conflict(state)
        answer = await ask_server(self.conn, self.request, self.source)
        expected = self.source.sha256 or answer.sha256
        part = await self._usable_part(state, answer)
        needed = None if answer.size is None else answer.size - part
        reserve = int(self.settings.reserve_mb * MiB)
        if needed is not None and needed + reserve > state.free_bytes:
            raise DiskFull(
                f"not enough space for models/{self.rel} on {self.conn.target.describe()}: "
                f"needs {size_text(needed)} (+{size_text(reserve)} kept free), "
                f"{size_text(state.free_bytes)} free",
                needed=needed,
                free=state.free_bytes,
                hint="remove models you no longer need (comfyfleet models ls / rm), or rent "
                "an instance with a larger disk (up --disk)",
            )
        self.resumed_from = part
        await self.files.begin(
            self.rel, {"source": self.shown, "source_id": self.sid, "started_at": self.clock.now()}
        )
        await self._download(part, answer.size)
        return await self._verify_and_place(expected)

    async def _existing(self, state: FileState, known: str | None = None) -> PullResult | None:
        """The file already in place, kept when it is this source's (else None)."""
        if not state.regular:
            raise UsageError(
                f"models/{self.rel} exists on {self.conn.target.describe()} and is no file",
                hint="remove it, or pull under another --name",
            )
        expected = self.source.sha256 or known
        entry = state.entry or {}
        # Our own record is trusted while the file keeps the size and time it had when placed.
        recorded = record_holds(entry, state.size, state.mtime)
        if recorded and expected is None and entry.get("source_id") == self.sid:
            return self._result("present", entry)
        if recorded and expected is not None and entry.get("sha256") == expected:
            return self._result("present", entry)
        if expected is None:
            return None
        self.emit(PullProgress("verify", f"models/{self.rel} exists: checking its sha256"))
        digest = await self.files.sha256(self.files.path(self.rel))
        if digest != expected:
            raise UsageError(
                f"models/{self.rel} already exists on {self.conn.target.describe()} with other "
                f"content (sha256 {digest}, expected {expected})",
                hint=f"remove it first (comfyfleet models rm ID {self.rel}), "
                "or pull under another --name",
            )
        placed = await self.files.record(self.rel, self._entry(digest, True))
        return self._result("present", placed)

    def _conflict(self, state: FileState) -> UsageError:
        origin = (state.entry or {}).get("source")
        what = f"from {origin}" if origin else "not placed by comfyfleet"
        return UsageError(
            f"models/{self.rel} already exists on {self.conn.target.describe()} ({what}) and "
            "there is no sha256 to tell whether it is this file",
            hint=f"give --sha256 to check it (kept when it matches), or remove it first "
            f"(comfyfleet models rm ID {self.rel})",
        )

    async def _usable_part(self, state: FileState, answer: HeadAnswer) -> int:
        """Bytes of an earlier `.part` to continue (a `.part` of another source is dropped)."""
        if state.part_size is None:
            return 0
        same = (state.partial or {}).get("source_id") == self.sid
        if same and (answer.size is None or state.part_size <= answer.size):
            if state.part_size:
                self.emit(PullProgress("check", f"continuing at {size_text(state.part_size)}"))
            return state.part_size
        await self.files.discard(self.rel)
        return 0

    async def _download(self, offset: int, total: int | None) -> None:
        part = self.files.part_path(self.rel)
        restarted = False
        while total is None or offset < total:
            self.attempts += 1
            start = offset

            def progress(p: download.Progress, start: int = start) -> None:
                size = total if total is not None else (start + p.total if p.total else None)
                self.emit(PullProgress("download", "", start + p.received, size, p.speed))

            self.emit(PullProgress("download", f"downloading {self.request.shown}", offset, total))
            got = await download.fetch(self.conn, self.request, part, progress)
            state = await self.files.state(self.rel)
            now = state.part_size or 0
            self.downloaded += max(0, now - offset)
            if got.ok and total is not None and now != total:
                await self.files.discard(self.rel)
                raise DownloadFailed(
                    f"the download of {self.request.shown} ended at {now} bytes, but the "
                    f"server announced {total}; the partial file was removed",
                    hint="pull again; if it persists, the server serves a broken file",
                )
            if got.ok:
                self.emit(PullProgress("download", "", now, total if total is not None else now))
                return
            if got.exit_code == download.BUSY_EXIT:
                raise DownloadFailed(
                    f"another pull of models/{self.rel} is running on "
                    f"{self.conn.target.describe()}",
                    hint="wait for it to finish, then pull again",
                )
            if got.exit_code == WRITE_ERROR:
                await self.files.discard(self.rel)
                needed = None if total is None else total - offset
                raise DiskFull(
                    f"writing models/{self.rel}.part failed on {self.conn.target.describe()} "
                    f"({got.error}): {size_text(needed)} were still needed, "
                    f"{size_text(state.free_bytes)} are free; the partial file was removed",
                    needed=needed,
                    free=state.free_bytes,
                    hint="free disk space on the instance (comfyfleet disk ID, models rm)",
                )
            if (got.exit_code == RANGE_ERROR or got.status == 416) and not restarted:
                restarted = True  # the server cannot continue this .part: start over once
                await self.files.discard(self.rel)
                offset = 0
                continue
            transient = got.exit_code in TRANSIENT_EXITS or (
                got.status is not None and (got.status >= 500 or got.status == 429)
            )
            if transient and self.attempts <= self.settings.retries:
                self.emit(PullProgress("retry", f"{got.error}; resuming at {size_text(now)}", now))
                await self.clock.sleep(min(30.0, 2.0 ** (self.attempts - 1)))
                offset = now
                continue
            raise await self._failed(got, now, transient)
        # a complete .part from an earlier pull: nothing left to fetch

    async def _failed(self, got: download.FetchResult, kept: int, transient: bool) -> Exception:
        if got.status in (401, 403):
            error: DownloadFailed = refused(self.request, self.source, got.status)
        else:
            error = DownloadFailed(
                f"downloading {self.request.shown} to {self.where} failed: {got.error}",
                status=got.status,
                retryable=transient,
            )
        if kept == 0:
            await self.files.discard(self.rel)
            return error
        error.hint = (
            f"{size_text(kept)} are kept in models/{self.rel}.part: pull again to continue, "
            f"or drop them with comfyfleet models rm ID {self.rel}"
        )
        return error

    async def _verify_and_place(self, expected: str | None) -> PullResult:
        self.emit(PullProgress("verify", f"checking the sha256 of models/{self.rel}"))
        digest = await self.files.sha256(self.files.part_path(self.rel))
        if expected is not None and digest != expected:
            await self.files.discard(self.rel)
            raise ChecksumMismatch(
                f"the download of {self.shown} to {self.where} has sha256 {digest}, expected "
                f"{expected}; the file was deleted",
                expected=expected,
                got=digest,
                hint="check --sha256 (or the manifest's), or the source: it may have changed",
            )
        entry = await self.files.place(self.rel, self._entry(digest, expected is not None))
        self.emit(PullProgress("done", f"models/{self.rel} is in place", entry["size"]))
        return self._result("downloaded", entry)


async def pull_on(
    conn: SshConnection,
    layout: InstanceLayout,
    source: ModelSource,
    *,
    tokens: Tokens,
    settings: DownloadSettings,
    clock: Clock,
    on_progress: Progress | None = None,
    directory: str | None = None,
) -> PullResult:
    """Put `source` into its folder on the instance behind `conn` (see the module doc).

    `directory` is the folder under models/ (default: the folder key's, see `folder_dir`).
    Raises UsageError (a different file is in the way, a missing token), DiskFull,
    ChecksumMismatch or DownloadFailed (HTTP and network failures, `retryable` when worth it).
    """
    pull = _Pull(
        conn,
        layout,
        source,
        tokens=tokens,
        settings=settings,
        clock=clock,
        on_progress=on_progress or (lambda _p: None),
        directory=directory,
    )
    return await pull.run()
