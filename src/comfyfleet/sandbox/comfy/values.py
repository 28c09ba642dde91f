"""Values that flow between simulated nodes, and how ComfyUI prints them in errors.

IMAGE is a batch of Pillow RGB images, MASK a batch of Pillow "L" images (255 = masked),
LATENT a dict with the size and what the sampler saw, everything else (MODEL, CLIP, VAE,
CONDITIONING...) an `Opaque` value that only says what it is. A `ValueList` is one output
of a custom node that ran several times over list inputs, or declared `OUTPUT_IS_LIST`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFilter


@dataclass
class Images:
    """An IMAGE batch: Pillow RGB frames of one size."""

    frames: list[Image.Image]

    @property
    def width(self) -> int:
        return self.frames[0].width if self.frames else 0

    @property
    def height(self) -> int:
        return self.frames[0].height if self.frames else 0

    def __str__(self) -> str:
        # ComfyUI formats a tensor input with str(); keep it short but tensor-like.
        return f"tensor(shape=[{len(self.frames)}, {self.height}, {self.width}, 3])"


@dataclass
class Masks:
    """A MASK batch: Pillow "L" frames, 255 where masked."""

    frames: list[Image.Image]

    def __str__(self) -> str:
        first = self.frames[0] if self.frames else None
        size = f"{first.height}, {first.width}" if first else "0, 0"
        return f"tensor(shape=[{len(self.frames)}, {size}])"


@dataclass
class Opaque:
    """A model-side value the sandbox does not compute (MODEL, CLIP, CONDITIONING...)."""

    kind: str
    info: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"<{self.kind} {self.info.get('name', '')}>".replace(" >", ">")


class ValueList(list[Any]):
    """The values of one output across a node's calls (ComfyUI keeps every output as a list).

    Custom nodes downstream run once per item (or get the whole list with `INPUT_IS_LIST`);
    any other value counts as a list of one.
    """


def latent(width: int, height: int, batch_size: int, **extra: Any) -> dict[str, Any]:
    """A LATENT value: ComfyUI's {"samples": ...} dict with the pixel size instead of a tensor."""
    return {"samples": {"width": width, "height": height, "batch_size": batch_size}, **extra}


def format_value(value: Any) -> Any:
    """ComfyUI's `format_value` for `current_inputs`: scalars as-is, the rest as str()."""
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return str(value)


def _seed_of(*parts: Any) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def render_picture(width: int, height: int, seed: int, text: str = "") -> Image.Image:
    """A deterministic picture standing in for a decoded latent: same seed and text, same pixels."""
    rng = random.Random(_seed_of(seed, text))
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    gradient = Image.linear_gradient("L").resize((width, height))
    img = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient
    )
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        r = max(2, rng.randrange(max(3, min(width, height) // 4)))
        fill = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=fill)
    return img.filter(ImageFilter.GaussianBlur(radius=max(1, min(width, height) // 64)))
