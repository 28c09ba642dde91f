"""The stand-in packages of the sandbox wheelhouse: names, versions and dependencies.

Each stand-in is a tiny wheel with real metadata (name, version, Requires-Dist) and a module
holding `__version__`, so pip resolves, upgrades and conflicts exactly as with the real
packages while nothing weighs more than a few kilobytes. Versions follow the real releases:
torch 2.8.0 pulls triton 3.4.0, xformers 0.0.32 pins torch 2.8.0, torchvision 0.23.0 pins
torch 2.8.0, and so on, so a careless `pip install` replaces torch as it would on an instance.

Stand-ins never replace a package the sandbox itself imports: the image's venv skips every
stand-in whose distribution the base Python already has (the venv sees the base's packages).
"""

from __future__ import annotations

from dataclasses import dataclass

LINUX = '; platform_system == "Linux"'


@dataclass(frozen=True)
class StandIn:
    """One stand-in distribution: PyPI name, version, Requires-Dist, import names."""

    name: str
    version: str
    requires: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()  # import names (dotted: inside a namespace package)
    kind: str = "plain"  # "torch", "torch-addon" (checks torch's version at import) or "plain"
    pairs_with: str = ""  # torch-addon: the torch version it was built against

    @property
    def import_names(self) -> tuple[str, ...]:
        return self.modules or (self.name.replace("-", "_").lower(),)


# torch, torchvision, torchaudio, triton, xformers, cuBLAS, cuda runtime, cuDNN (per release)
_TORCH_RELEASES = (
    ("2.7.1", "0.22.1", "3.3.1", "0.0.31", "12.8.3.14", "12.8.57", "9.7.1.26"),
    ("2.8.0", "0.23.0", "3.4.0", "0.0.32", "12.8.4.1", "12.8.90", "9.10.2.21"),
    ("2.9.0", "0.24.0", "3.5.0", "0.0.33", "12.8.4.1", "12.8.90", "9.10.2.21"),
)


def _torch_family() -> list[StandIn]:
    out: list[StandIn] = []
    seen_nvidia: set[tuple[str, str]] = set()
    for torch, vision, triton, xformers, cublas, cudart, cudnn in _TORCH_RELEASES:
        out.append(
            StandIn(
                "torch",
                f"{torch}+cu128",
                (
                    f"triton=={triton}{LINUX}",
                    f"nvidia-cublas-cu12=={cublas}{LINUX}",
                    f"nvidia-cuda-runtime-cu12=={cudart}{LINUX}",
                    f"nvidia-cudnn-cu12=={cudnn}{LINUX}",
                ),
                kind="torch",
            )
        )
        out.append(
            StandIn(
                "torchvision",
                f"{vision}+cu128",
                (f"torch=={torch}",),
                kind="torch-addon",
                pairs_with=torch,
            )
        )
        out.append(
            StandIn(
                "torchaudio",
                f"{torch}+cu128",
                (f"torch=={torch}",),
                kind="torch-addon",
                pairs_with=torch,
            )
        )
        out.append(
            StandIn(
                "xformers", xformers, (f"torch=={torch}",), kind="torch-addon", pairs_with=torch
            )
        )
        out.append(StandIn("triton", triton))
        for name, version, requires, module in (
            ("nvidia-cublas-cu12", cublas, (), "nvidia.cublas"),
            ("nvidia-cuda-runtime-cu12", cudart, (), "nvidia.cuda_runtime"),
            ("nvidia-cudnn-cu12", cudnn, ("nvidia-cublas-cu12",), "nvidia.cudnn"),
        ):
            if (name, version) not in seen_nvidia:
                seen_nvidia.add((name, version))
                out.append(StandIn(name, version, requires, modules=(module,)))
    # PyTorch's CPU index: same version, no CUDA, no nvidia-* dependencies.
    out.append(StandIn("torch", "2.9.0+cpu", kind="torch"))
    out.append(
        StandIn(
            "torchvision", "0.24.0+cpu", ("torch==2.9.0",), kind="torch-addon", pairs_with="2.9.0"
        )
    )
    out.append(
        StandIn(
            "torchaudio", "2.9.0+cpu", ("torch==2.9.0",), kind="torch-addon", pairs_with="2.9.0"
        )
    )
    return out


def _common() -> list[StandIn]:
    hub = "huggingface-hub>=0.34.0,<1.0"
    return [
        StandIn("trampoline", "0.1.2"),
        StandIn("torchsde", "0.2.6", ("torch>=1.6.0", "trampoline>=0.1.2")),
        StandIn("einops", "0.8.1"),
        StandIn("safetensors", "0.6.2"),
        StandIn("tokenizers", "0.22.1", ("huggingface-hub>=0.16.4,<1.0",)),
        StandIn("huggingface-hub", "0.35.3"),
        StandIn(
            "transformers", "4.56.2", (hub, "tokenizers>=0.22.0,<=0.23.0", "safetensors>=0.4.3")
        ),
        StandIn("sentencepiece", "0.2.1"),
        StandIn("kornia-rs", "0.1.9"),
        StandIn("kornia", "0.8.1", ("torch>=1.9.1", "kornia-rs>=0.1.9")),
        StandIn("spandrel", "0.4.1", ("torch", "torchvision", "safetensors", "einops")),
        StandIn(
            "accelerate",
            "1.10.1",
            ("torch>=2.0.0", "huggingface-hub>=0.21.0", "safetensors>=0.4.3"),
        ),
        StandIn("diffusers", "0.35.1", (hub, "safetensors>=0.3.1")),
        StandIn("timm", "1.0.20", ("torch", "torchvision", "huggingface-hub", "safetensors")),
        StandIn("opencv-python", "4.12.0.88", modules=("cv2",)),
        StandIn("opencv-python-headless", "4.12.0.88", modules=("cv2",)),
        StandIn("opencv-contrib-python", "4.12.0.88", modules=("cv2",)),
        StandIn("onnx", "1.19.0"),
        StandIn("onnxruntime", "1.22.1"),
        StandIn("onnxruntime-gpu", "1.22.0", modules=("onnxruntime",)),
        StandIn("insightface", "0.7.3", ("onnx",)),
        StandIn(
            "ultralytics", "8.3.200", ("torch>=1.8.0", "torchvision>=0.9.0", "opencv-python>=4.6.0")
        ),
        StandIn("segment-anything", "1.0", modules=("segment_anything",)),
        StandIn("gitpython", "3.1.45", modules=("git",)),
        StandIn("piexif", "1.1.3"),
        StandIn("comfyui-frontend-package", "1.27.10"),
        StandIn("comfyui-frontend-package", "1.26.13"),  # older than ComfyUI 0.3.64 wants
        StandIn("comfyui-workflow-templates", "0.1.91"),
        StandIn("comfyui-embedded-docs", "0.2.6"),
    ]


STANDINS: tuple[StandIn, ...] = (*_torch_family(), *_common())

#: What Vast's ComfyUI image has in /venv/main (name -> version), installed at first boot.
IMAGE_VENV: dict[str, str] = {
    "torch": "2.8.0+cu128",
    "torchvision": "0.23.0+cu128",
    "torchaudio": "2.8.0+cu128",
    "xformers": "0.0.32",
    "triton": "3.4.0",
    "nvidia-cublas-cu12": "12.8.4.1",
    "nvidia-cuda-runtime-cu12": "12.8.90",
    "nvidia-cudnn-cu12": "9.10.2.21",
    "trampoline": "0.1.2",
    "torchsde": "0.2.6",
    "einops": "0.8.1",
    "safetensors": "0.6.2",
    "tokenizers": "0.22.1",
    "huggingface-hub": "0.35.3",
    "transformers": "4.56.2",
    "sentencepiece": "0.2.1",
    "kornia-rs": "0.1.9",
    "kornia": "0.8.1",
    "spandrel": "0.4.1",
    "gitpython": "3.1.45",
    "comfyui-frontend-package": "1.27.10",
    "comfyui-workflow-templates": "0.1.91",
    "comfyui-embedded-docs": "0.2.6",
}


def find(name: str, version: str) -> StandIn:
    for standin in STANDINS:
        if standin.name == name and standin.version == version:
            return standin
    raise KeyError(f"no stand-in {name}=={version}")
