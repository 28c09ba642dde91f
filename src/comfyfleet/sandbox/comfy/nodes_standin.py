"""Timed stand-ins for model nodes: loaders that check their files, samplers that report steps.

Loaders fail like ComfyUI when the file is missing (FileNotFoundError) or when a .safetensors
header cannot be read (safetensors' SafetensorError). Samplers take `duration` per step, send
`progress` each step (interrupts take effect there) and previews when the preview method is
not "none". VAEDecode draws a deterministic picture from the seed and prompt text the latent
carries, so a text-to-image workflow yields a real PNG. Every other class outputs values of its
declared types (see `standin`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from PIL import Image

from comfyfleet.graph.model_folders import model_inputs_of
from comfyfleet.models.nodes import NodeDef
from comfyfleet.sandbox.comfy.layout import SafetensorsError, read_safetensors_header
from comfyfleet.sandbox.comfy.nodes_base import (
    NodeContext,
    NodeFailure,
    NodeResult,
    Registry,
    execution_frames,
    frame,
    step_time,
)
from comfyfleet.sandbox.comfy.values import Images, Masks, Opaque, latent, render_picture

registry = Registry()

LOADER_DURATION = 2.0
STEP_DURATION = 0.5
VAE_DURATION = 1.0
_SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
SAFE_OPEN = 'with safetensors.safe_open(ckpt, framework="pt", device=device.type) as f:'
_BUILTIN_VAES = {"pixel_space", "taesd", "taesdxl", "taesd3", "taef1"}


def text_of(value: Any) -> str:
    if isinstance(value, Opaque):
        return str(value.info.get("text", ""))
    return ""


def _info(kw: dict[str, Any]) -> dict[str, Any]:
    """What an opaque output remembers: its scalar inputs and any prompt text upstream."""
    info: dict[str, Any] = {}
    for name, value in kw.items():
        if isinstance(value, int | float | bool | str) and name not in {"prompt", "extra_pnginfo"}:
            info[name] = value
        elif isinstance(value, Opaque):
            for key in ("text", "steps", "noise_seed", "seed"):
                if key in value.info and key not in info:
                    info[key] = value.info[key]
    return info


def check_model_file(ctx: NodeContext, folder: str, name: str) -> None:
    """Fail like ComfyUI's loaders when the file is missing or its safetensors header is bad."""
    path = ctx.layout.full_path(folder, name)
    frames = execution_frames(ctx.layout.root)
    if path is None:
        raise NodeFailure(
            "FileNotFoundError",
            f"Model in folder '{folder}' with filename '{name}' not found.",
            [
                *frames,
                frame(
                    ctx.layout.root,
                    "folder_paths.py",
                    308,
                    "get_full_path_or_raise",
                    "raise FileNotFoundError(f\"Model in folder '{folder_name}' with filename "
                    "'{filename}' not found.\")",
                ),
            ],
        )
    if name.lower().endswith(_SAFETENSORS_SUFFIXES):
        try:
            read_safetensors_header(path)
        except SafetensorsError as exc:
            raise NodeFailure(
                "safetensors._safetensors_rust.SafetensorError",
                str(exc),
                [
                    *frames,
                    frame(
                        ctx.layout.root,
                        "comfy/utils.py",
                        59,
                        "load_torch_file",
                        SAFE_OPEN,
                    ),
                ],
            ) from exc


def model_inputs(definition: NodeDef) -> dict[str, str]:
    """input -> model folder for a loader class (from the shared graph knowledge)."""
    return {name: folder for name, folder in model_inputs_of(definition) if folder is not None}


async def load_models(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    """Any loader: check every model-file input, then hand out opaque models."""
    names: list[str] = []
    for input_name, folder in model_inputs(ctx.definition).items():
        value = kw.get(input_name)
        if not isinstance(value, str):
            continue
        if ctx.class_type == "VAELoader" and value in _BUILTIN_VAES:
            continue
        check_model_file(ctx, folder, value)
        names.append(value)
    result = standin(ctx, kw)
    for out in result.outputs:
        if isinstance(out, Opaque) and names:
            out.info.setdefault("name", names[0])
    return result


@registry.add("CLIPTextEncode", duration=0.1)
async def clip_text_encode(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    return NodeResult((Opaque("CONDITIONING", {"text": str(kw.get("text", ""))}),))


@registry.add("EmptyLatentImage", "EmptySD3LatentImage")
async def empty_latent(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    return NodeResult((latent(int(kw["width"]), int(kw["height"]), int(kw.get("batch_size", 1))),))


def _steps(class_type: str, kw: dict[str, Any]) -> int:
    if class_type == "KSamplerAdvanced":
        last = min(int(kw.get("steps", 20)), int(kw.get("end_at_step", 10000)))
        return max(1, last - int(kw.get("start_at_step", 0)))
    if "steps" in kw:
        return max(1, int(kw["steps"]))
    for value in kw.values():
        if isinstance(value, Opaque) and "steps" in value.info:
            return max(1, int(value.info["steps"]))
    return 20


def _seed(kw: dict[str, Any]) -> int:
    for key in ("seed", "noise_seed"):
        if key in kw:
            return int(kw[key])
    for value in kw.values():
        if isinstance(value, Opaque):
            for key in ("noise_seed", "seed"):
                if key in value.info:
                    return int(value.info[key])
    return 0


def _size_of(value: Any) -> tuple[int, int, int]:
    if isinstance(value, dict) and isinstance(value.get("samples"), dict):
        s = value["samples"]
        return int(s.get("width", 512)), int(s.get("height", 512)), int(s.get("batch_size", 1))
    return 512, 512, 1


@registry.add(
    "KSampler",
    "KSamplerAdvanced",
    "SamplerCustom",
    "SamplerCustomAdvanced",
    duration=STEP_DURATION,
    stepped=True,
)
async def sampler(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    steps = _steps(ctx.class_type, kw)
    seed = _seed(kw)
    text = text_of(kw.get("positive")) or text_of(kw.get("guider"))
    width, height, batch = _size_of(kw.get("latent_image"))
    for step in range(steps):
        await ctx.sleep(step_time(ctx, steps))
        preview = None
        if ctx.preview_method != "none":
            picture = render_picture(max(8, width // 8), max(8, height // 8), seed, text)
            preview = ("JPEG", picture.resize((max(8, width // 8), max(8, height // 8))), 512)
        await ctx.progress(step + 1, steps, preview)
    out = latent(width, height, batch, seed=seed, text=text)
    return NodeResult((out, out) if len(ctx.definition.outputs) > 1 else (out,))


@registry.add("VAEDecode", "VAEDecodeTiled", duration=VAE_DURATION)
async def vae_decode(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    samples = kw.get("samples")
    width, height, batch = _size_of(samples)
    seed = int(samples.get("seed", 0)) if isinstance(samples, dict) else 0
    text = str(samples.get("text", "")) if isinstance(samples, dict) else ""
    frames = await asyncio.to_thread(
        lambda: [render_picture(width, height, seed + i, text) for i in range(batch)]
    )
    return NodeResult((Images(frames),))


@registry.add("VAEEncode", "VAEEncodeTiled", duration=VAE_DURATION)
async def vae_encode(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    pixels: Images = kw["pixels"]
    return NodeResult((latent(pixels.width, pixels.height, len(pixels.frames)),))


@registry.add("PreviewAny")
async def preview_any(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    import json

    source = kw.get("source")
    if isinstance(source, str):
        value = source
    elif isinstance(source, int | float | bool):
        value = str(source)
    elif source is not None:
        try:
            value = json.dumps(source)
        except (TypeError, ValueError):
            value = str(source)
    else:
        value = "None"
    return NodeResult((), {"text": [value]})


@registry.add("StringConcatenate")
async def string_concatenate(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    return NodeResult(
        (str(kw.get("delimiter", "")).join((str(kw["string_a"]), str(kw["string_b"]))),)
    )


@registry.add("ProgressProbe", duration=0.3, stepped=True)
async def progress_probe(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    """The test custom node of the second fixture run: steps with JPEG previews, then a text."""
    images: Images = kw["image"]
    steps = int(kw.get("steps", 4))
    for step in range(steps):
        await ctx.sleep(step_time(ctx, steps))
        thumb = images.frames[0].resize((64, 64)) if images.frames else Image.new("RGB", (64, 64))
        await ctx.progress(step + 1, steps, ("JPEG", thumb, 512))
    ctx.send_text("probe finished")
    return NodeResult((images,))


def standin(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    """Outputs of the declared types, built from the inputs where that makes sense."""
    outputs: list[Any] = []
    for out_type in ctx.definition.outputs:
        outputs.append(_standin_value(out_type, kw))
    return NodeResult(tuple(outputs))


def _first(kw: dict[str, Any], kind: type) -> Any:
    return next((v for v in kw.values() if isinstance(v, kind)), None)


def _standin_value(out_type: str, kw: dict[str, Any]) -> Any:
    if out_type == "IMAGE":
        images = _first(kw, Images)
        if images is not None:
            return images
        width, height = int(kw.get("width", 512)), int(kw.get("height", 512))
        return Images([render_picture(width, height, _seed(kw), repr(sorted(_info(kw).items())))])
    if out_type == "MASK":
        masks = _first(kw, Masks)
        return masks if masks is not None else Masks([Image.new("L", (64, 64), 0)])
    if out_type == "LATENT":
        source = next((v for v in kw.values() if isinstance(v, dict) and "samples" in v), None)
        if source is not None:
            return dict(source)
        return latent(
            int(kw.get("width", 512)), int(kw.get("height", 512)), int(kw.get("batch_size", 1))
        )
    defaults: dict[str, Any] = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}
    if out_type in defaults:
        value = kw.get("value", defaults[out_type])
        return value if isinstance(value, int | float | str | bool) else defaults[out_type]
    if out_type == "*":
        return next(iter(kw.values()), None)
    return Opaque(out_type, _info(kw))


async def run_standin(ctx: NodeContext, kw: dict[str, Any]) -> NodeResult:
    return standin(ctx, kw)
