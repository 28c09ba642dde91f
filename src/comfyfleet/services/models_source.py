"""What `models pull` downloads: a source text turned into a checked `ModelSource`, the folder
it goes to, and the token (if any) that goes with it.

    planned = await plan_pull(settings, "hf://owner/repo/file.safetensors", folder="loras")
    planned.source          # ModelSource: URL on the configured hub, folder, name, sha256
    planned.directory       # where under models/ it goes ("loras", or "clip" when asked so)

The folder is `--folder` (a ComfyUI folder key or a legacy name such as `clip`/`unet`), else
what the source knows (Civitai's model type, ComfyUI-Manager's model list, the user's
manifest), else an error asking for `--folder`. The expected sha256 is `--sha256`, else the
manifest's or Civitai's; Hugging Face's comes with the HEAD on the instance.

Tokens come from `[downloads]` settings, else from the variables and file the hubs' own tools
read (HF_TOKEN, the huggingface-cli token file, CIVITAI_TOKEN). They are registered with the
redactor as soon as they are read and only ever leave as a header in curl's stdin config.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from comfyfleet.catalog import Catalogs, Hubs, ModelSource, check_filename, check_sha256
from comfyfleet.catalog.hubs import CivitaiVersion, CivitaiVersionFile
from comfyfleet.catalog.models import UNKNOWN_FOLDER
from comfyfleet.catalog.sources import CivitaiRef, HfRef, Ref, UrlRef, make_source, parse_ref
from comfyfleet.config import Settings
from comfyfleet.errors import CatalogError, UnsafeSource, UsageError
from comfyfleet.graph.model_folders import FOLDER_ALIASES, FOLDER_DIRS, canonical_folder
from comfyfleet.util.redact import redact, register_secret

#: Civitai model types -> ComfyUI folder keys (types without a ComfyUI folder are left out).
CIVITAI_FOLDERS: Mapping[str, str] = {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "locon": "loras",
    "dora": "loras",
    "lycoris": "loras",
    "textualinversion": "embeddings",
    "hypernetwork": "hypernetworks",
    "vae": "vae",
    "controlnet": "controlnet",
    "upscaler": "upscale_models",
}


def model_dirs(key: str) -> tuple[str, ...]:
    """The folders under models/ ComfyUI lists for folder key `key` (`clip` and
    `text_encoders` for text_encoders), in its search order."""
    return tuple(d[len("models/") :] for d in FOLDER_DIRS.get(key, ()) if d.startswith("models/"))


#: Folder keys a model can be pulled into (custom_nodes is no model folder).
MODEL_FOLDERS: tuple[str, ...] = tuple(k for k in FOLDER_DIRS if model_dirs(k))
#: Every folder name under models/ that ComfyUI lists, with its folder key.
DIR_FOLDERS: Mapping[str, str] = {d: k for k in MODEL_FOLDERS for d in model_dirs(k)}


def check_folder(name: str) -> str:
    """The folder key `name` means (`unet` -> diffusion_models), else UsageError listing them."""
    text = name.strip().strip("/")
    key = DIR_FOLDERS.get(text) or canonical_folder(text)
    if key not in MODEL_FOLDERS:
        aliases = ", ".join(f"{a} ({k})" for a, k in FOLDER_ALIASES.items())
        raise UsageError(
            f"{name!r} is not a ComfyUI model folder",
            hint=f"use one of: {', '.join(MODEL_FOLDERS)}; legacy names: {aliases}",
        )
    return key


def folder_dir(folder: str, asked: str | None = None) -> str:
    """The folder under models/ a file of folder key `folder` goes to: the name the user
    asked for when it is one ComfyUI lists (`clip`), else `models/<key>` when it is one
    (ComfyUI-Manager's choice for diffusion_models), else ComfyUI's first."""
    dirs = model_dirs(folder)
    for wanted in (asked, folder):
        if wanted and wanted.strip("/") in dirs:
            return wanted.strip("/")
    return dirs[0]


@dataclass(frozen=True)
class PlannedPull:
    """A checked source, where under models/ it goes, and where each choice came from."""

    source: ModelSource
    directory: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """The file's path relative to models/."""
        return f"{self.directory}/{self.source.filename}"


def _name_from(ref: Ref) -> str | None:
    """The file name a URL or Hugging Face path ends in, when it looks like a file."""
    if isinstance(ref, HfRef):
        name = posixpath.basename(ref.path)
    elif isinstance(ref, UrlRef):
        name = posixpath.basename(unquote(urlsplit(ref.url).path))
    else:
        return None
    return name if "." in name.strip(".") else None


def _derived_name(name: str) -> str:
    """A file name the source gave (not the user): when unfit, the fix is `--name`."""
    try:
        return check_filename(name)
    except UnsafeSource as exc:
        raise UnsafeSource(exc.message, hint="give it another name with --name NAME") from exc


def _civitai_file(version: CivitaiVersion, query: str) -> CivitaiVersionFile | None:
    """The file `/api/download/models/<version>[?type=...]` serves: the asked type, else the
    primary file, else the first model file."""
    wanted = (parse_qs(query).get("type") or [""])[0].lower()
    files = version.files
    for pick in (
        [f for f in files if wanted and f.type.lower() == wanted],
        [f for f in files if f.primary and not wanted],
        [f for f in files if f.type.lower() == "model"],
        list(files),
    ):
        if pick:
            return pick[0]
    return None


async def _civitai(
    catalogs: Catalogs, ref: CivitaiRef, notes: list[str]
) -> tuple[CivitaiRef, CivitaiVersionFile | None, str]:
    """The ref with its version, the file it serves and the model's type (best effort)."""
    hub = catalogs.hub_client
    if ref.version_id is None:
        if hub is None:
            raise UsageError(
                f"civitai:{ref.model_id} names no version and the catalogs are offline",
                hint="write civitai:MODEL@VERSION (the version id is in the model page's URL)",
            )
        version_id = await hub.civitai_latest_version(ref.model_id or 0)
        if version_id is None:
            raise UsageError(
                f"no version of Civitai model {ref.model_id} could be found",
                hint="check the model id, or write civitai:MODEL@VERSION",
            )
        ref = CivitaiRef(ref.model_id, version_id, ref.query)
        notes.append(f"Civitai model {ref.model_id}: newest version {version_id}")
    assert ref.version_id is not None
    version = await hub.civitai_version(ref.version_id) if hub is not None else None
    if version is None:
        return ref, None, ""
    if ref.model_id is None and version.model_id is not None:
        ref = CivitaiRef(version.model_id, ref.version_id, ref.query)
    return ref, _civitai_file(version, ref.query), version.model_type


async def plan_pull(
    settings: Settings,
    text: str,
    *,
    folder: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> PlannedPull:
    """Resolve what `models pull SOURCE [--folder] [--name] [--sha256]` downloads.

    Bad input raises UsageError (UnsafeSource for URLs and names unfit for a remote command)
    naming the value and the fix; nothing is contacted but the catalogs.
    """
    hubs = Hubs(settings.catalog.huggingface_url, settings.catalog.civitai_url)
    ref = parse_ref(text, hubs)
    key = check_folder(folder) if folder else None
    digest = check_sha256(sha256) if sha256 else None
    filename = check_filename(name) if name else None
    notes: list[str] = []
    async with Catalogs(settings, transport=transport) as catalogs:
        if isinstance(ref, CivitaiRef):
            ref, file, model_type = await _civitai(catalogs, ref, notes)
            if file is not None:
                filename = filename or _derived_name(file.name)
                if digest is None and file.sha256:
                    digest = check_sha256(file.sha256)
                    notes.append("sha256 from Civitai")
            typed = CIVITAI_FOLDERS.get(model_type.lower())
            if key is None and typed:
                key = typed
                notes.append(f"folder {key}: Civitai's model type {model_type}")
        derived = _name_from(ref)
        filename = filename or (_derived_name(derived) if derived else None)
        if filename is None:
            raise UsageError(
                f"the file name of {redact(text.strip())} is not known",
                hint="give it with --name FILE.safetensors",
            )
        if key is None or digest is None:
            key, filename, digest = await _known(catalogs, key, filename, name, digest, notes)
        warnings = tuple(catalogs.warnings)
    if key is None:
        raise UsageError(
            f"which model folder does {filename} go to? The source does not say",
            hint=f"give --folder, one of: {', '.join(MODEL_FOLDERS)}",
        )
    source = make_source(
        ref, folder=key, filename=filename, hubs=hubs, origin="user", sha256=digest
    )
    return PlannedPull(source, folder_dir(key, folder), tuple(notes), warnings)


async def _known(
    catalogs: Catalogs,
    key: str | None,
    filename: str,
    name: str | None,
    digest: str | None,
    notes: list[str],
) -> tuple[str | None, str, str | None]:
    """Folder, name and sha256 completed from ComfyUI-Manager's model list and the manifest."""
    wanted = key or UNKNOWN_FOLDER
    try:
        listed, _ = (await catalogs.models()).find(wanted, filename)
    except CatalogError:
        listed = None
    entry = catalogs.manifest().find(wanted, filename)
    if key is None and listed is not None:
        key = listed.folder
        notes.append(f"folder {key}: ComfyUI-Manager's model list")
        if name is None and listed.subdir:
            filename = check_filename(listed.path)
    if key is None and entry is not None and entry.folder:
        key = entry.folder
        notes.append(f"folder {key}: your models manifest")
    if digest is None and entry is not None and entry.sha256:
        digest = entry.sha256
        notes.append("sha256 from your models manifest")
    return key, filename, digest


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """Download tokens; never shown (repr hides them)."""

    huggingface: str | None = field(default=None, repr=False)
    civitai: str | None = field(default=None, repr=False)


def _hf_token_file(env: Mapping[str, str]) -> str | None:
    """The token `huggingface-cli login` saved ($HF_TOKEN_PATH, $HF_HOME/token, ~/.cache/...)."""
    explicit = env.get("HF_TOKEN_PATH")
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or "~", ".cache"), "huggingface"
    )
    path = Path(explicit or os.path.join(home, "token")).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def download_tokens(settings: Settings, env: Mapping[str, str] | None = None) -> Tokens:
    """The Hugging Face and Civitai tokens: settings, else the hubs' own variables/files."""
    env = os.environ if env is None else env
    d = settings.downloads
    hf = d.huggingface_token.get_secret_value() if d.huggingface_token else None
    hf = hf or env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or _hf_token_file(env)
    civitai = d.civitai_token.get_secret_value() if d.civitai_token else None
    civitai = civitai or env.get("CIVITAI_TOKEN") or env.get("CIVITAI_API_TOKEN")
    for token in (hf, civitai):
        register_secret(token)
    return Tokens(hf or None, civitai or None)


_CIVITAI_HINT = (
    "create an API key at civitai.com/user/account and set CIVITAI_TOKEN "
    "(or COMFYFLEET_DOWNLOADS__CIVITAI_TOKEN, or [downloads] civitai_token)"
)
HF_HINT = (
    "set HF_TOKEN (or COMFYFLEET_DOWNLOADS__HUGGINGFACE_TOKEN) to a token of an account that "
    "accepted the repository's terms on its page"
)


def auth_headers(source: ModelSource, tokens: Tokens) -> tuple[tuple[str, str], ...]:
    """The Authorization header the source's hub takes, if any; a Civitai source without a
    token is refused here, before the instance is contacted."""
    token = None
    if source.kind == "civitai":
        token = tokens.civitai
        if not token:
            raise UsageError(
                f"downloading {shown_source(source)} needs a Civitai API token", hint=_CIVITAI_HINT
            )
    elif source.kind == "huggingface":
        token = tokens.huggingface
    if not token:
        return ()
    register_secret(token)  # masked in every message from now on, however it was obtained
    return (("Authorization", f"Bearer {token}"),)


def shown_source(source: ModelSource) -> str:
    """The source as messages, the index and the database show it (credentials masked)."""
    return redact(source.spec)


def source_id(source: ModelSource) -> str:
    """A fingerprint of the exact URL, to tell a `.part` of this source from another's."""
    return hashlib.sha256(source.url.encode()).hexdigest()[:32]
