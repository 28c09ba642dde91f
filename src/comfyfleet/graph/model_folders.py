"""Which node inputs name model files, and where ComfyUI keeps those files.

ComfyUI's /object_info shows a model input as a plain combo of file names; nothing in it says
which folder the names come from. This module holds that knowledge for the stock nodes
(ComfyUI 0.3.64: `nodes.py`, `comfy_extras/`), the folder layout of `folder_paths.py`, and a
heuristic for nodes it does not know (custom nodes).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from comfyfleet.models.nodes import InputSpec, NodeCatalog, NodeDef

#: File extensions ComfyUI lists in model folders (`folder_paths.supported_pt_extensions`).
MODEL_EXTENSIONS: frozenset[str] = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
)

#: Extensions that mark an option as a model file when guessing (custom loaders use more).
_GUESS_EXTENSIONS = MODEL_EXTENSIONS | {".gguf", ".onnx", ".yaml", ".engine", ".torchscript"}

#: Folder key -> directories relative to the ComfyUI root, in ComfyUI's search order
#: (`folder_paths.py` plus the `output/...` second paths main.py adds).
FOLDER_DIRS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "checkpoints": ("models/checkpoints", "output/checkpoints"),
        "configs": ("models/configs",),
        "loras": ("models/loras", "output/loras"),
        "vae": ("models/vae", "output/vae"),
        "text_encoders": ("models/text_encoders", "models/clip", "output/clip"),
        "diffusion_models": ("models/unet", "models/diffusion_models", "output/diffusion_models"),
        "clip_vision": ("models/clip_vision",),
        "style_models": ("models/style_models",),
        "embeddings": ("models/embeddings",),
        "diffusers": ("models/diffusers",),
        "vae_approx": ("models/vae_approx",),
        "controlnet": ("models/controlnet", "models/t2i_adapter"),
        "gligen": ("models/gligen",),
        "upscale_models": ("models/upscale_models",),
        "custom_nodes": ("custom_nodes",),
        "hypernetworks": ("models/hypernetworks",),
        "photomaker": ("models/photomaker",),
        "classifiers": ("models/classifiers",),
        "model_patches": ("models/model_patches",),
        "audio_encoders": ("models/audio_encoders",),
    }
)

#: Folder key -> extensions ComfyUI lists there; None = every file. `diffusers` lists folders
#: and `classifiers` only files without an extension (ComfyUI's `{""}`).
FOLDER_EXTENSIONS: Mapping[str, frozenset[str] | None] = MappingProxyType(
    {
        **{key: MODEL_EXTENSIONS for key in FOLDER_DIRS},
        "configs": frozenset({".yaml"}),
        "diffusers": frozenset({"folder"}),
        "custom_nodes": None,
        "classifiers": frozenset({""}),
    }
)

#: Legacy folder names ComfyUI still accepts (`folder_paths.map_legacy`).
FOLDER_ALIASES: Mapping[str, str] = MappingProxyType(
    {"unet": "diffusion_models", "clip": "text_encoders"}
)


def _inputs(folder: str, *names: str) -> dict[str, str]:
    return dict.fromkeys(names, folder)


_CLIP = "text_encoders"

#: class_type -> {input name: folder key} for the stock loaders of ComfyUI 0.3.64.
MODEL_INPUTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "CheckpointLoaderSimple": _inputs("checkpoints", "ckpt_name"),
        "unCLIPCheckpointLoader": _inputs("checkpoints", "ckpt_name"),
        "ImageOnlyCheckpointLoader": _inputs("checkpoints", "ckpt_name"),
        "CheckpointLoader": {"config_name": "configs", "ckpt_name": "checkpoints"},
        "CreateHookModelAsLora": _inputs("checkpoints", "ckpt_name"),
        "CreateHookModelAsLoraModelOnly": _inputs("checkpoints", "ckpt_name"),
        "LoraLoader": _inputs("loras", "lora_name"),
        "LoraLoaderModelOnly": _inputs("loras", "lora_name"),
        "CreateHookLora": _inputs("loras", "lora_name"),
        "CreateHookLoraModelOnly": _inputs("loras", "lora_name"),
        "TrainLoraNode": _inputs("loras", "existing_lora"),
        "VAELoader": _inputs("vae", "vae_name"),
        "CLIPLoader": _inputs(_CLIP, "clip_name"),
        "DualCLIPLoader": _inputs(_CLIP, "clip_name1", "clip_name2"),
        "TripleCLIPLoader": _inputs(_CLIP, "clip_name1", "clip_name2", "clip_name3"),
        "QuadrupleCLIPLoader": _inputs(
            _CLIP, "clip_name1", "clip_name2", "clip_name3", "clip_name4"
        ),
        "UNETLoader": _inputs("diffusion_models", "unet_name"),
        "ControlNetLoader": _inputs("controlnet", "control_net_name"),
        "DiffControlNetLoader": _inputs("controlnet", "control_net_name"),
        "UpscaleModelLoader": _inputs("upscale_models", "model_name"),
        "CLIPVisionLoader": _inputs("clip_vision", "clip_name"),
        "StyleModelLoader": _inputs("style_models", "style_model_name"),
        "GLIGENLoader": _inputs("gligen", "gligen_name"),
        "HypernetworkLoader": _inputs("hypernetworks", "hypernetwork_name"),
        "PhotoMakerLoader": _inputs("photomaker", "photomaker_model_name"),
        "ModelPatchLoader": _inputs("model_patches", "name"),
        "AudioEncoderLoader": _inputs("audio_encoders", "audio_encoder_name"),
        "DiffusersLoader": _inputs("diffusers", "model_path"),
    }
)

#: Spec options that mark a combo as a file uploaded to the input folder, not a model.
UPLOAD_FLAGS: tuple[str, ...] = ("image_upload", "video_upload", "audio_upload", "file_upload")

#: Options some stock model combos carry that are not files (VAELoader, TrainLoraNode).
NON_FILE_OPTIONS: frozenset[str] = frozenset(
    {"pixel_space", "taesd", "taesdxl", "taesd3", "taef1", "[None]"}
)

#: Input-name fragments of custom loaders -> folder key, most specific first.
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("clip_vision", "clip_vision"),
    ("controlnet", "controlnet"),
    ("control_net", "controlnet"),
    ("upscale", "upscale_models"),
    ("style_model", "style_models"),
    ("hypernetwork", "hypernetworks"),
    ("photomaker", "photomaker"),
    ("embedding", "embeddings"),
    ("gligen", "gligen"),
    ("audio_encoder", "audio_encoders"),
    ("lora", "loras"),
    ("ckpt", "checkpoints"),
    ("checkpoint", "checkpoints"),
    ("unet", "diffusion_models"),
    ("diffusion_model", "diffusion_models"),
    ("vae", "vae"),
    ("clip", "text_encoders"),
    ("text_encoder", "text_encoders"),
)


def canonical_folder(name: str) -> str:
    """The folder key ComfyUI uses for `name` (`unet` -> `diffusion_models`, `clip` -> ...)."""
    return FOLDER_ALIASES.get(name, name)


def looks_like_model_file(value: Any) -> bool:
    """True for a string that ends in a model file extension."""
    if not isinstance(value, str) or value in NON_FILE_OPTIONS:
        return False
    return posixpath.splitext(value.replace("\\", "/"))[1].lower() in _GUESS_EXTENSIONS


def model_folder_for(class_type: str, input_name: str, spec: InputSpec | None) -> str | None:
    """The folder key whose files `class_type.input_name` lists, when it can be known.

    Stock loaders come from `MODEL_INPUTS`. For other nodes an input counts when it is a combo
    named `*_name` (or `*_file`) whose options look like model files, or whose options are empty
    (a server without models); its folder is then guessed from the name, else None.
    """
    known = MODEL_INPUTS.get(class_type)
    if known is not None and input_name in known:
        return known[input_name]
    if not is_model_input(class_type, input_name, spec):
        return None
    return guess_folder(input_name)


def guess_folder(input_name: str) -> str | None:
    """The folder a custom loader's input most likely lists, from its name (`lora_name`...)."""
    lowered = input_name.lower()
    for fragment, folder in _NAME_HINTS:
        if fragment in lowered:
            return folder
    return None


def is_model_input(class_type: str, input_name: str, spec: InputSpec | None) -> bool:
    """True when `class_type.input_name` selects a model file (its folder may be unknown)."""
    known = MODEL_INPUTS.get(class_type)
    if known is not None and input_name in known:
        return True
    if spec is None or not spec.is_combo:
        return False
    if any(spec.options.get(flag) for flag in UPLOAD_FLAGS):
        return False
    if not input_name.lower().endswith(("_name", "_file", "_path")):
        return False
    choices = [c for c in spec.choices or () if c not in NON_FILE_OPTIONS]
    return not choices or any(looks_like_model_file(c) for c in choices)


def model_inputs_of(node: NodeDef) -> Iterator[tuple[str, str | None]]:
    """(input name, folder or None) for every model input of `node`."""
    for spec in node.visible_inputs():
        if is_model_input(node.name, spec.name, spec):
            yield spec.name, model_folder_for(node.name, spec.name, spec)


def vae_options(vae_files: Iterable[str], approx_files: Iterable[str] = ()) -> list[str]:
    """VAELoader's choices: the vae files, the TAESD pairs present in vae_approx, pixel_space."""
    options = list(vae_files)
    approx = list(approx_files)
    for name in ("taesd", "taesdxl", "taesd3", "taef1"):
        if any(a.startswith(f"{name}_encoder.") for a in approx) and any(
            a.startswith(f"{name}_decoder.") for a in approx
        ):
            options.append(name)
    options.append("pixel_space")
    return options


def _replace_choices(spec: Any, choices: Sequence[str]) -> Any:
    """The same raw input spec with other combo options, in the shape it came in."""
    if not isinstance(spec, list | tuple) or not spec:
        return spec
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else None
    if isinstance(spec[0], list | tuple):
        return [list(choices), *spec[1:]]
    if spec[0] == "COMBO" and opts is not None:
        return [spec[0], {**opts, "options": list(choices)}, *spec[2:]]
    return spec


def with_model_lists(catalog: NodeCatalog, model_lists: Mapping[str, Sequence[str]]) -> NodeCatalog:
    """A catalog whose model combos list `model_lists[folder]` instead of their captured options.

    Folders missing from `model_lists` keep their options. VAELoader gets ComfyUI's synthetic
    entries (TAESD pairs from `vae_approx`, `pixel_space`); TrainLoraNode its `[None]`.
    """
    lists = {canonical_folder(k): list(v) for k, v in model_lists.items()}
    raw: dict[str, Any] = dict(catalog.raw)
    for class_type in catalog:
        node = catalog[class_type]
        replaced: dict[str, dict[str, Any]] = {}
        for name, folder in model_inputs_of(node):
            if folder is None or folder not in lists:
                continue
            spec = node.inputs[name]
            choices = lists[folder]
            if class_type == "VAELoader":
                choices = vae_options(choices, lists.get("vae_approx", ()))
            elif "[None]" in (spec.choices or ()):
                choices = [*choices, "[None]"]
            replaced.setdefault(spec.section, {})[name] = _replace_choices(spec.raw, choices)
        if replaced:
            entry = dict(node.raw)
            sections = dict(entry.get("input") or {})
            for section, specs in replaced.items():
                sections[section] = {**(sections.get(section) or {}), **specs}
            entry["input"] = sections
            raw[class_type] = entry
    return NodeCatalog(raw)
