"""File calls of the ComfyUI client: uploads, /view, downloads and the user data folder.

`FileCalls` is mixed into `ComfyClient`; it needs only the client's `ComfyHttp`. Paths in
the user data folder go in one URL segment with `/` sent as `%2F` (ComfyUI's route does
not match an unencoded slash). A missing file or folder is `ComfyNotFound`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfyfleet.comfy.http import ComfyHttp, path_segment
from comfyfleet.errors import ComfyNotFound, ComfyProtocolError, UsageError
from comfyfleet.models.comfy import DownloadedFile, FileRef, UserdataEntry, wire_obj, wire_str_list


class FileCalls:
    """Uploads, file views and user data of one server (see the module doc)."""

    _http: ComfyHttp

    async def upload_image(
        self,
        data: bytes | Path,
        *,
        filename: str | None = None,
        subfolder: str = "",
        type: str = "input",
        overwrite: bool = False,
    ) -> FileRef:
        """Upload an image (bytes or a file); the server may rename it (`x (1).png`).

        Without a filename, bytes are named by their content hash, so the same bytes get the
        same name and the server keeps one copy.
        """
        content, name = await _upload_source(data, filename, "upload")
        fields = {"type": type, "subfolder": subfolder, "overwrite": str(overwrite).lower()}
        return await self._upload("upload/image", content, name, fields)

    async def upload_mask(
        self, data: bytes | Path, *, original: FileRef, filename: str | None = None
    ) -> FileRef:
        """Upload a mask: the server copies its alpha onto `original` and saves the result
        under the mask's name in input/clipspace (as the ComfyUI mask editor does)."""
        content, name = await _upload_source(data, filename, "mask")
        fields = {
            "type": "input",
            "subfolder": "clipspace",
            "overwrite": "true",
            "original_ref": json.dumps(original.to_wire()),
        }
        return await self._upload("upload/mask", content, name, fields)

    async def _upload(
        self, path: str, content: bytes, name: str, fields: Mapping[str, str]
    ) -> FileRef:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = await self._http.request(
            "POST",
            path,
            files={"image": (name, content, mime)},
            data=dict(fields),
            forbidden_is_auth=False,
        )
        return FileRef.from_wire(self._http.decode_json(response, f"POST /{path}"), path)

    async def view(
        self, ref: FileRef, *, preview: str | None = None, channel: str | None = None
    ) -> bytes:
        """The bytes of a server file; `preview="webp;90"` re-encodes, `channel` picks rgb/a."""
        params = _view_params(ref)
        if preview is not None:
            params["preview"] = preview
        if channel is not None:
            params["channel"] = channel
        try:
            response = await self._http.request(
                "GET", "view", params=params, forbidden_is_auth=False
            )
        except ComfyNotFound as exc:
            raise _file_missing(ref) from exc
        return response.content

    async def download(self, ref: FileRef, dest: Path) -> DownloadedFile:
        """Stream a server file to `dest` (through `dest.part`); size and sha256 of what landed."""
        try:
            got = await self._http.download("view", _view_params(ref), dest)
        except ComfyNotFound as exc:
            raise _file_missing(ref) from exc
        return DownloadedFile(ref, dest, got.size, got.sha256, got.content_type)

    # --- userdata --------------------------------------------------------------------------

    async def userdata_list(self, directory: str, *, recurse: bool = False) -> list[str]:
        """File paths under `directory` of the user's data, relative to it ([] if absent)."""
        params = {"dir": directory}
        if recurse:
            params["recurse"] = "true"
        body = await self._userdata_listing(params)
        return list(wire_str_list(body, "userdata"))

    async def userdata_list_full(self, directory: str) -> list[UserdataEntry]:
        """Every file under `directory` (recursively) with size and times ([] if absent)."""
        body = await self._userdata_listing(
            {"dir": directory, "recurse": "true", "full_info": "true"}
        )
        return [UserdataEntry.from_wire(v) for v in body]

    async def _userdata_listing(self, params: Mapping[str, str]) -> list[Any]:
        try:
            body = await self._http.request(
                "GET", "userdata", params=params, forbidden_is_auth=False
            )
        except ComfyNotFound:
            return []  # "Directory not found": nothing stored there yet
        answer = self._http.decode_json(body, "GET /userdata")
        if not isinstance(answer, list):
            raise ComfyProtocolError(f"GET /userdata: expected a list, got {type(answer).__name__}")
        return answer

    async def userdata_read(self, path: str) -> bytes:
        try:
            response = await self._http.request(
                "GET", f"userdata/{path_segment(path)}", forbidden_is_auth=False
            )
        except ComfyNotFound as exc:
            raise _userdata_missing(path) from exc
        return response.content

    async def userdata_write(self, path: str, data: bytes, *, overwrite: bool = True) -> None:
        """Store `data` at `path` (nested folders are created); exists + no overwrite -> 409."""
        params = None if overwrite else {"overwrite": "false"}
        await self._http.request(
            "POST",
            f"userdata/{path_segment(path)}",
            params=params,
            content=data,
            forbidden_is_auth=False,
        )

    async def userdata_delete(self, path: str) -> None:
        try:
            await self._http.request(
                "DELETE", f"userdata/{path_segment(path)}", forbidden_is_auth=False
            )
        except ComfyNotFound as exc:
            raise _userdata_missing(path) from exc

    async def userdata_move(self, src: str, dest: str, *, overwrite: bool = False) -> None:
        params = {"overwrite": str(overwrite).lower()}
        try:
            await self._http.request(
                "POST",
                f"userdata/{path_segment(src)}/move/{path_segment(dest)}",
                params=params,
                forbidden_is_auth=False,
            )
        except ComfyNotFound as exc:
            raise _userdata_missing(src) from exc

    async def settings(self) -> dict[str, Any]:
        return dict(wire_obj(await self._http.get_json("settings"), "settings"))


def _view_params(ref: FileRef) -> dict[str, str]:
    return {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}


def _file_missing(ref: FileRef) -> ComfyNotFound:
    return ComfyNotFound(
        f"the server has no {ref.type} file {ref.relpath!r}",
        status=404,
        hint="the file may have been deleted, or the temp folder wiped by a restart",
    )


def _userdata_missing(path: str) -> ComfyNotFound:
    return ComfyNotFound(f"the server has no user data file {path!r}", status=404)


async def _upload_source(data: bytes | Path, filename: str | None, stem: str) -> tuple[bytes, str]:
    if isinstance(data, Path):
        try:
            content = await asyncio.to_thread(data.read_bytes)
        except OSError as exc:
            raise UsageError(f"cannot read {data}: {exc.strerror or exc}") from exc
        return content, filename or data.name
    if filename:
        return data, filename
    digest = hashlib.sha256(data).hexdigest()[:16]
    return data, f"{stem}-{digest}{_image_suffix(data)}"


def _image_suffix(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return ".png"
