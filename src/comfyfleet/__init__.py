"""comfyfleet: rent Vast.ai GPUs and run ComfyUI workflows on them."""

__version__ = "0.1.0"
__all__ = ["__version__"]
