"""Image nodes executed for real with Pillow (their ComfyUI semantics, without torch).

Heavy pixel work runs in a worker thread, as ComfyUI runs prompts outside its event loop, so
the HTTP and WebSocket side stays responsive while a large blur runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps, ImageSequence, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from comfyfleet.sandbox.comfy.layout import Layout
from comfyfleet.sandbox.comfy.nodes_base import (
    NodeContext,
    NodeFailure,
    NodeResult,
    Registry,
    execution_frames,
    frame,
)
from comfyfleet.sandbox.comfy.values import Images, Masks

registry = Registry()

# Beyond this a real EmptyImage would need more memory than the sandbox lends it (bytes of
# ComfyUI's float32 single-channel tensor); it fails as torch's CPU allocator does.
ALLOC_LIMIT_BYTES = 512 * 1024 * 1024
_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "bislerp": Image.Resampling.BICUBIC,
}


def _map(images: Images, fn: Any) -> Images:
    return Images([fn(f) for f in images.frames])


@registry.add("EmptyImage")
async def empty_image(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    width, height, batch = int(kw["width"]), int(kw["height"]), int(kw.get("batch_size", 1))
    color = int(kw.get("color", 0))
    wanted = batch * height * width * 4
    if wanted > ALLOC_LIMIT_BYTES:
        raise NodeFailure(
            "RuntimeError",
            "[enforce fail at alloc_cpu.cpp:127] err == 0. "
            "DefaultCPUAllocator: can't allocate memory: "
            f"you tried to allocate {wanted} bytes. Error code 12 (Cannot allocate memory)",
            [
                *execution_frames(ctx.layout.root),
                frame(
                    ctx.layout.root,
                    "nodes.py",
                    1877,
                    "generate",
                    "r = torch.full([batch_size, height, width, 1], ((color >> 16) & 0xFF) / 0xFF)",
                ),
            ],
        )
    rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
    frame_img = Image.new("RGB", (width, height), rgb)
    return NodeResult((Images([frame_img.copy() for _ in range(batch)]),))


@registry.add("ImageInvert")
async def image_invert(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    return NodeResult((await asyncio.to_thread(_map, kw["image"], ImageOps.invert),))


@registry.add("ImageBlur")
async def image_blur(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    images: Images = kw["image"]
    if int(kw.get("blur_radius", 1)) == 0:
        return NodeResult((images,))
    blur = ImageFilter.GaussianBlur(radius=float(kw.get("sigma", 1.0)))
    return NodeResult((await asyncio.to_thread(_map, images, lambda f: f.filter(blur)),))


def _scale(img: Image.Image, width: int, height: int, method: str, crop: str) -> Image.Image:
    if crop == "center":
        old_w, old_h = img.size
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        img = img.crop((x, y, old_w - x, old_h - y))
    return img.resize((width, height), _RESAMPLE.get(method, Image.Resampling.BILINEAR))


@registry.add("ImageScale")
async def image_scale(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    images: Images = kw["image"]
    width, height = int(kw.get("width", 0)), int(kw.get("height", 0))
    if width == 0 and height == 0:
        return NodeResult((images,))
    if width == 0:
        width = max(1, round(images.width * height / images.height))
    elif height == 0:
        height = max(1, round(images.height * width / images.width))
    method, crop = str(kw.get("upscale_method", "bilinear")), str(kw.get("crop", "disabled"))
    return NodeResult(
        (await asyncio.to_thread(_map, images, lambda f: _scale(f, width, height, method, crop)),)
    )


@registry.add("ImageScaleBy")
async def image_scale_by(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    images: Images = kw["image"]
    factor = float(kw.get("scale_by", 1.0))
    width, height = max(1, round(images.width * factor)), max(1, round(images.height * factor))
    method = str(kw.get("upscale_method", "bilinear"))
    return NodeResult(
        (
            await asyncio.to_thread(
                _map, images, lambda f: _scale(f, width, height, method, "disabled")
            ),
        )
    )


@registry.add("ImageCrop")
async def image_crop(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    images: Images = kw["image"]
    x = min(int(kw.get("x", 0)), images.width - 1)
    y = min(int(kw.get("y", 0)), images.height - 1)
    box = (x, y, min(images.width, x + int(kw["width"])), min(images.height, y + int(kw["height"])))
    return NodeResult((_map(images, lambda f: f.crop(box)),))


@registry.add("ImageFlip")
async def image_flip(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    vertical = str(kw.get("flip_method", "")).startswith("x-axis")
    op = ImageOps.flip if vertical else ImageOps.mirror
    return NodeResult((_map(kw["image"], op),))


@registry.add("ImageRotate")
async def image_rotate(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    turns = {
        "90 degrees": Image.Transpose.ROTATE_270,
        "180 degrees": Image.Transpose.ROTATE_180,
        "270 degrees": Image.Transpose.ROTATE_90,
    }
    op = turns.get(str(kw.get("rotation", "none")))
    images: Images = kw["image"]
    return NodeResult((images if op is None else _map(images, lambda f: f.transpose(op)),))


@registry.add("ImageBatch")
async def image_batch(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    first, second = kw["image1"], kw["image2"]
    if (second.width, second.height) != (first.width, first.height):
        second = _map(second, lambda f: _scale(f, first.width, first.height, "bilinear", "center"))
    return NodeResult((Images(first.frames + second.frames),))


def _file_sha256(layout: Layout, kw: dict[str, Any], node_id: str) -> str:
    path = layout.annotated_path(str(kw.get("image", "")))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _open_image(ctx: NodeContext, path: Path, func: str, line: int) -> Image.Image:
    pillow_frames = [
        frame(
            ctx.layout.root,
            "nodes.py",
            line,
            func,
            "img = node_helpers.pillow(Image.open, image_path)",
            "^" * 43,
        ),
        frame(ctx.layout.root, "node_helpers.py", 31, "pillow", "x = fn(arg)", "^" * 7),
    ]
    try:
        img = Image.open(path)
        img.load()
        return img
    except UnidentifiedImageError as exc:
        raise NodeFailure(
            "PIL.UnidentifiedImageError",
            f"cannot identify image file '{path}'",
            [*execution_frames(ctx.layout.root), *pillow_frames],
        ) from exc
    except FileNotFoundError as exc:
        raise NodeFailure(
            "FileNotFoundError",
            f"[Errno 2] No such file or directory: '{path}'",
            [*execution_frames(ctx.layout.root), *pillow_frames],
        ) from exc


def _load_frames(img: Image.Image) -> tuple[Images, Masks]:
    frames: list[Image.Image] = []
    masks: list[Image.Image] = []
    for raw in ImageSequence.Iterator(img):
        page = ImageOps.exif_transpose(raw) or raw
        if page.mode == "I":
            page = page.point(lambda v: v * (1 / 255))
        rgb = page.convert("RGB")
        if frames and rgb.size != frames[0].size:
            continue
        if "A" in page.getbands():
            mask = ImageOps.invert(page.getchannel("A"))
        elif page.mode == "P" and "transparency" in page.info:
            mask = ImageOps.invert(page.convert("RGBA").getchannel("A"))
        else:
            mask = Image.new("L", (64, 64), 0)
        frames.append(rgb)
        masks.append(mask)
    if img.format == "MPO":
        frames, masks = frames[:1], masks[:1]
    return Images(frames), Masks(masks)


@registry.add("LoadImage", "LoadImageOutput", is_changed=_file_sha256)
async def load_image(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    path = ctx.layout.annotated_path(str(kw["image"]))
    img = _open_image(ctx, path, "load_image", 1647)
    images, masks = await asyncio.to_thread(_load_frames, img)
    return NodeResult((images, masks))


@registry.add("LoadImageMask", is_changed=_file_sha256)
async def load_image_mask(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    path = ctx.layout.annotated_path(str(kw["image"]))
    img = _open_image(ctx, path, "load_image", 1706)
    img = ImageOps.exif_transpose(img) or img
    if img.getbands() != ("R", "G", "B", "A"):
        img = img.convert("RGBA")
    channel = str(kw.get("channel", "alpha"))[0].upper()
    mask = img.getchannel(channel)
    if channel == "A":
        mask = ImageOps.invert(mask)
    return NodeResult((Masks([mask]),))


def _compute_vars(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    for key, value in {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }.items():
        prefix = prefix.replace(key, value)
    return prefix


def save_image_path(
    prefix: str, output_dir: Path, width: int, height: int
) -> tuple[Path, str, int, str]:
    """ComfyUI's `get_save_image_path`: folder, base name, next counter, subfolder."""
    if "%" in prefix:
        prefix = _compute_vars(prefix, width, height)
    norm = os.path.normpath(prefix)
    subfolder, filename = os.path.dirname(norm), os.path.basename(norm)
    folder = Path(os.path.abspath(output_dir / subfolder))
    if os.path.commonpath((str(output_dir), str(folder))) != str(output_dir):
        raise NodeFailure(
            "Exception",
            "**** ERROR: Saving image outside the output folder is not allowed."
            "\n full_output_folder: "
            f"{folder}\n         output_dir: {output_dir}\n         commonpath: "
            f"{os.path.commonpath((str(output_dir), str(folder)))}",
        )
    counter = 1
    if folder.is_dir():
        taken = [0]
        for name in os.listdir(folder):
            head = name[: len(filename) + 1]
            if head[:-1] == filename and head[-1:] == "_":
                try:
                    taken.append(int(name[len(filename) + 1 :].split("_")[0]))
                except ValueError:
                    taken.append(0)
        counter = max(taken) + 1 if len(taken) > 1 else 1
    else:
        folder.mkdir(parents=True, exist_ok=True)
    return folder, filename, counter, subfolder


def _save_batch(
    images: Images,
    folder: Path,
    filename: str,
    counter: int,
    subfolder: str,
    type_name: str,
    compress_level: int,
    pnginfo: PngInfo | None,
) -> list[dict[str, str]]:
    results = []
    for batch_number, img in enumerate(images.frames):
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        img.save(folder / name, pnginfo=pnginfo, compress_level=compress_level)
        results.append({"filename": name, "subfolder": subfolder, "type": type_name})
        counter += 1
    return results


async def _save(
    ctx: NodeContext,
    kw: dict[str, Any],
    output_dir: Path,
    type_name: str,
    suffix: str,
    compress_level: int,
) -> NodeResult:
    images: Images = kw["images"]
    prefix = str(kw.get("filename_prefix", "ComfyUI")) + suffix
    folder, filename, counter, subfolder = save_image_path(
        prefix, output_dir, images.width, images.height
    )
    info = PngInfo()
    if kw.get("prompt") is not None:
        info.add_text("prompt", json.dumps(kw["prompt"]))
    extra = kw.get("extra_pnginfo")
    if isinstance(extra, dict):
        for key, value in extra.items():
            info.add_text(key, json.dumps(value))
    results = await asyncio.to_thread(
        _save_batch, images, folder, filename, counter, subfolder, type_name, compress_level, info
    )
    return NodeResult((), {"images": results})


@registry.add("SaveImage")
async def save_image(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    return await _save(ctx, kw, ctx.layout.output, "output", "", 4)


@registry.add("PreviewImage")
async def preview_image(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    # ComfyUI draws the suffix once per node object (from this odd alphabet) and keeps it.
    suffix = ctx.state.setdefault(
        "temp_suffix",
        "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5)),
    )
    return await _save(
        ctx, {**kw, "filename_prefix": "ComfyUI"}, ctx.layout.temp, "temp", suffix, 1
    )
