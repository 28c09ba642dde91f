"""Inputs that name a file in ComfyUI's input folder (LoadImage and friends).

Such files are uploaded to the server at run time, so their names are checked against the
files at hand rather than a captured option list.
"""

from __future__ import annotations

from collections.abc import Iterator

from comfyfleet.graph.custom import FILE_INPUT_NODES
from comfyfleet.models.nodes import InputSpec, NodeDef

#: Stock nodes with a file input that has no validation hook and no upload flag.
_EXTRA_FILE_INPUTS: dict[str, tuple[str, str]] = {
    "Load3D": ("model_file", "3d"),
    "Load3DAnimation": ("model_file", "3d"),
}

_FLAG_KINDS: tuple[tuple[str, str], ...] = (
    ("image_upload", "image"),
    ("video_upload", "video"),
    ("audio_upload", "audio"),
    ("file_upload", "file"),
)


def file_input_kind(class_type: str, input_name: str, spec: InputSpec | None) -> str | None:
    """`image`, `video`, `audio`, `latent`, `3d` or `file` when the input names an input file."""
    stock = FILE_INPUT_NODES.get(class_type)
    if stock is not None and stock[0] == input_name:
        return stock[1]
    extra = _EXTRA_FILE_INPUTS.get(class_type)
    if extra is not None and extra[0] == input_name:
        return extra[1]
    if spec is not None:
        for flag, kind in _FLAG_KINDS:
            if spec.options.get(flag):
                return kind
    return None


def file_inputs_of(node: NodeDef) -> Iterator[tuple[str, str]]:
    """(input name, kind) for every input of `node` that names an input file."""
    for spec in node.visible_inputs():
        kind = file_input_kind(node.name, spec.name, spec)
        if kind is not None:
            yield spec.name, kind
