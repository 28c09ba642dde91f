"""The sandbox root on disk, laid out like a ComfyUI checkout (`folder_paths.py`).

    <root>/models/<folder>/...   model files (listing is a live scan, as in ComfyUI)
    <root>/custom_nodes/         node packs (see `packs`); ComfyUI's websocket_image_save.py
    <root>/input/  output/  temp/    (temp/ is wiped at every start)
    <root>/user/default/workflows/, comfy.settings.json
    <root>/user/comfyui.db       ComfyUI's (empty) assets database: created, never touched
    <root>/user/queue.db*        the persisted queue, only in that mode (see `queuestore`)
    <root>/comfyui.log           unless the server is given another log file
    <root>/.sandbox-gpu.json     what the GPU is doing, for the host's nvidia-smi

A fresh root gets the stock `input/example.png` and a tiny valid placeholder checkpoint
`models/checkpoints/v1-5-pruned-emaonly-fp16.safetensors`, as on Vast's ComfyUI image; a root
(or one without custom_nodes/) gets the `websocket_image_save.py` pack a checkout ships.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import struct
from pathlib import Path

from PIL import Image

from comfyfleet.graph.model_folders import (
    FOLDER_DIRS,
    FOLDER_EXTENSIONS,
    MODEL_EXTENSIONS,
    canonical_folder,
)

PLACEHOLDER_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
#: The model configs a ComfyUI checkout ships in models/configs/.
STOCK_CONFIGS = (
    "anything_v3.yaml", "v1-inference.yaml", "v1-inference_clip_skip_2.yaml",
    "v1-inference_clip_skip_2_fp16.yaml", "v1-inference_fp16.yaml",
    "v1-inpainting-inference.yaml", "v2-inference-v.yaml", "v2-inference-v_fp32.yaml",
    "v2-inference.yaml", "v2-inference_fp32.yaml", "v2-inpainting-inference.yaml",
)  # fmt: skip
_DIR_TYPES = ("input", "output", "temp")
GPU_STATUS_FILE = ".sandbox-gpu.json"
#: The node pack every ComfyUI checkout has in custom_nodes/ (SaveImageWebsocket).
WEBSOCKET_IMAGE_SAVE = """\
import time


class SaveImageWebsocket:
    \"\"\"Sends full-size images to the client over the WebSocket, without metadata.\"\"\"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "api/image"

    def save_images(self, images):
        return {}

    @classmethod
    def IS_CHANGED(cls, images):
        return time.time()


NODE_CLASS_MAPPINGS = {"SaveImageWebsocket": SaveImageWebsocket}
"""


class Layout:
    """Paths and live listings of one sandbox root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.input = self.root / "input"
        self.output = self.root / "output"
        self.temp = self.root / "temp"
        self.user = self.root / "user"
        self.custom_nodes = self.root / "custom_nodes"
        self.log_file = self.root / "comfyui.log"
        self.assets_db = self.user / "comfyui.db"
        self.queue_db = self.user / "queue.db"
        self.gpu_status = self.root / GPU_STATUS_FILE

    # --- setup -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the folders, wipe temp/, and seed a fresh root with the stock files."""
        fresh = not (self.root / "models").exists()
        stock_pack = self.custom_nodes / "websocket_image_save.py"
        if fresh or not self.custom_nodes.exists():
            self.custom_nodes.mkdir(parents=True, exist_ok=True)
            if not stock_pack.exists():
                stock_pack.write_text(WEBSOCKET_IMAGE_SAVE)
        for dirs in FOLDER_DIRS.values():
            for rel in dirs:
                if not rel.startswith("output/"):
                    (self.root / rel).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.temp, ignore_errors=True)
        for path in (self.input, self.output, self.temp, self.user / "default" / "workflows"):
            path.mkdir(parents=True, exist_ok=True)
        settings = self.user / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.write_text("{}")
        if not self.assets_db.exists():
            self.assets_db.touch()  # ComfyUI's start creates it (0 bytes); nothing uses it
        if fresh:
            for name in STOCK_CONFIGS:
                (self.root / "models" / "configs" / name).write_text(
                    "model:\n  target: placeholder\n"
                )
            Image.new("RGB", (64, 64), (233, 84, 32)).save(self.input / "example.png")
            write_safetensors(
                self.root / "models" / "checkpoints" / PLACEHOLDER_CHECKPOINT,
                {
                    "modelspec.title": "sandbox placeholder",
                    "modelspec.architecture": "stable-diffusion-v1",
                },
            )

    # --- folders ---------------------------------------------------------------------------

    @staticmethod
    def folder_names() -> list[str]:
        return list(FOLDER_DIRS)

    def has_folder(self, folder: str) -> bool:
        return canonical_folder(folder) in FOLDER_DIRS

    def folder_paths(self, folder: str) -> list[Path]:
        return [self.root / rel for rel in FOLDER_DIRS[canonical_folder(folder)]]

    def filename_list(self, folder: str) -> list[str]:
        """ComfyUI's `get_filename_list`: a recursive scan of every path, filtered, sorted."""
        name = canonical_folder(folder)
        exts = FOLDER_EXTENSIONS.get(name)
        found: set[str] = set()
        for base in self.folder_paths(name):
            for rel in _walk_files(base):
                if exts is None or os.path.splitext(rel)[1].lower() in exts:
                    found.add(rel)
        return sorted(found)

    def model_entries(self, folder: str) -> list[dict[str, object]]:
        """`/experiment/models/{folder}` entries: name, pathIndex, times and size."""
        out: list[dict[str, object]] = []
        for index, base in enumerate(self.folder_paths(folder)):
            for rel in _walk_files(base, skip_hidden=True):
                if os.path.splitext(rel)[1].lower() not in MODEL_EXTENSIONS:
                    continue
                stat = (base / rel).stat()
                out.append(
                    {
                        "name": rel,
                        "pathIndex": index,
                        "modified": stat.st_mtime,
                        "created": stat.st_ctime,
                        "size": stat.st_size,
                    }
                )
        return out

    def full_path(self, folder: str, filename: str) -> Path | None:
        """ComfyUI's `get_full_path`: the first existing file of that name in the folder's paths."""
        if not self.has_folder(folder):
            return None
        rel = os.path.relpath(os.path.join("/", filename), "/")
        for base in self.folder_paths(folder):
            candidate = base / rel
            if candidate.is_file():
                return candidate
        return None

    # --- input / output / temp ---------------------------------------------------------------

    def dir_by_type(self, type_name: str | None) -> Path | None:
        if type_name in _DIR_TYPES:
            return self.root / str(type_name)
        return None

    def annotated(self, name: str) -> tuple[str, Path | None]:
        """Split `x.png [output]` into the name and the folder its annotation names."""
        for type_name in _DIR_TYPES:
            suffix = f" [{type_name}]"
            if name.endswith(f"[{type_name}]"):
                return name[: -len(suffix)], self.root / type_name
        return name, None

    def annotated_path(self, name: str, default: Path | None = None) -> Path:
        name, base = self.annotated(name)
        return (base or default or self.input) / name

    def input_files(self, content_type: str | None) -> list[str]:
        """Top-level files of input/, optionally only those of one MIME family (LoadImage)."""
        names = [e.name for e in os.scandir(self.input) if e.is_file()]
        if content_type is not None:
            names = [n for n in names if content_type_of(n) == content_type]
        return sorted(names)


def content_type_of(filename: str) -> str | None:
    if filename.lower().endswith(".webp"):
        return "image"
    mime, _ = mimetypes.guess_type(filename, strict=False)
    return mime.split("/")[0] if mime else None


def _walk_files(base: Path, *, skip_hidden: bool = False) -> list[str]:
    if not base.is_dir():
        return []
    out: list[str] = []
    for dirpath, subdirs, filenames in os.walk(base, followlinks=True):
        subdirs[:] = [d for d in subdirs if d != ".git" and not (skip_hidden and d.startswith("."))]
        for name in filenames:
            if skip_hidden and name.startswith("."):
                continue
            out.append(os.path.relpath(os.path.join(dirpath, name), base))
    return out


def write_safetensors(path: Path, metadata: dict[str, str]) -> None:
    """Write a tiny valid .safetensors file: one 4-float tensor and a `__metadata__` block."""
    header = {
        "__metadata__": metadata,
        "weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * 16)


class SafetensorsError(Exception):
    """The header of a .safetensors file cannot be read (the text safetensors itself gives)."""


def read_safetensors_header(path: Path, max_size: int = 100_000_000) -> dict[str, object]:
    """Parse a .safetensors JSON header, failing as the safetensors library does."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise SafetensorsError("Error while deserializing header: header too small")
        (size,) = struct.unpack("<Q", head)
        if size > max_size:
            raise SafetensorsError("Error while deserializing header: header too large")
        total = path.stat().st_size
        if 8 + size > total:
            raise SafetensorsError("Error while deserializing header: invalid header length")
        raw = fh.read(size)
    if not raw.startswith(b"{"):
        raise SafetensorsError("Error while deserializing header: invalid header start")
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SafetensorsError(
            f"Error while deserializing header: invalid UTF-8 in header: {exc}"
        ) from exc
    except json.JSONDecodeError as exc:
        raise SafetensorsError(
            f"Error while deserializing header: invalid JSON in header: {exc}"
        ) from exc
    if not isinstance(header, dict):
        raise SafetensorsError("Error while deserializing header: invalid header start")
    return header
