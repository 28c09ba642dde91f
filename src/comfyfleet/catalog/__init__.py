"""Node pack and model catalogs: which pack provides a class, where a model file comes from.

An adapter like `comfy/` or `vast/`: it talks to ComfyUI-Manager's published catalogs, the
Comfy Registry, Hugging Face and Civitai (every base URL in `[catalog]` settings), caches
what they say on disk, falls back to copies shipped in the package (saying so), and returns
typed values. Start from `Catalogs`.
"""

from comfyfleet.catalog.catalogs import Catalogs
from comfyfleet.catalog.fetch import Provenance
from comfyfleet.catalog.manifest import Manifest, load_manifest
from comfyfleet.catalog.models import UNKNOWN_FOLDER, ModelResolution, WantedModel
from comfyfleet.catalog.nodes import NodeIndex
from comfyfleet.catalog.packs import Candidate, NodeResolution, Pack, PackHint
from comfyfleet.catalog.sources import (
    Hubs,
    ModelSource,
    check_filename,
    check_sha256,
    check_url,
    make_source,
    parse_ref,
)

__all__ = [
    "UNKNOWN_FOLDER",
    "Candidate",
    "Catalogs",
    "Hubs",
    "Manifest",
    "ModelResolution",
    "ModelSource",
    "NodeIndex",
    "NodeResolution",
    "Pack",
    "PackHint",
    "Provenance",
    "WantedModel",
    "check_filename",
    "check_sha256",
    "check_url",
    "load_manifest",
    "make_source",
    "parse_ref",
]
