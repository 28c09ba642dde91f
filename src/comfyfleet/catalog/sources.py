"""Where a model file can be downloaded from: typed, validated sources.

A source names a URL and where the file goes (`folder` key + `filename` relative to it,
`/` subfolders allowed). These values end up in commands run on an instance, so they are
checked here, once: URLs are http(s) with no credentials and only URL characters; file
names are relative paths of plain segments without whitespace or shell metacharacters;
sha256 is 64 hex digits. Anything else raises `UnsafeSource` naming the value and the rule.

Source texts users and workflows write:

    hf://OWNER/REPO/path/file.safetensors           Hugging Face (revision `main`)
    hf://OWNER/REPO@REV/path/file.safetensors       ... at a revision
    https://huggingface.co/OWNER/REPO/resolve/REV/path   (or /blob/: the page of the file)
    civitai:MODEL@VERSION  civitai:MODEL            Civitai (no version: the latest one)
    https://civitai.com/models/MODEL[?modelVersionId=VERSION]
    https://civitai.com/api/download/models/VERSION[?type=...]
    https://any.host/path/file.safetensors          a plain URL

Hugging Face and Civitai URLs are rebuilt on the configured base URLs (a mirror, or a
test's stand-in), so every download goes where the settings say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from comfyfleet.errors import UnsafeSource

SourceKind = Literal["huggingface", "civitai", "url"]
SourceOrigin = Literal["workflow", "model-list", "manifest", "civitai-hash", "user"]

# RFC 3986 characters; whitespace, quotes, backslashes, `<>^{|}` and backticks are not URLs.
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
# One segment of a file name: word characters and `. + - = @ , % ~`; never a leading `-`.
_SEGMENT = re.compile(r"^(?!-)[\w.+\-=@,%~]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_HF_HOSTS = frozenset({"huggingface.co", "www.huggingface.co", "hf.co"})
_CIVITAI_HOSTS = frozenset({"civitai.com", "www.civitai.com"})


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL fit for a command line, else UnsafeSource."""
    text = url.strip()
    parts = urlsplit(text) if _URL_CHARS.match(text) else None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeSource(
            f"not a usable download URL: {text[:200]!r}",
            hint="give an http(s) URL without spaces, quotes or shell characters",
        )
    if parts.username or parts.password:
        raise UnsafeSource(
            f"download URL for {parts.hostname} carries credentials",
            hint="tokens go in COMFYFLEET_* settings or the keyring, never in a URL",
        )
    return text


def check_filename(name: str) -> str:
    """`name` (relative, `/`-separated) if safe for a remote command, else UnsafeSource."""
    text = name.replace("\\", "/")
    segments = text.split("/")
    if not text or text.startswith("/") or any(s in {"", ".", ".."} for s in segments):
        raise UnsafeSource(
            f"model file name {name!r} is not a plain relative path",
            hint="use NAME or SUBFOLDER/NAME, without '..' or a leading '/'",
        )
    bad = next((s for s in segments if not _SEGMENT.match(s)), None)
    if bad is not None:
        raise UnsafeSource(
            f"model file name {name!r} has whitespace or shell characters (in {bad!r})",
            hint="rename the file: letters, digits and . _ - + = @ , % ~ only",
        )
    return text


def check_sha256(value: str) -> str:
    """Lower-case hex sha256, else UnsafeSource."""
    if not _SHA256.match(value.strip()):
        raise UnsafeSource(f"not a sha256: {value[:80]!r}", hint="give 64 hexadecimal digits")
    return value.strip().lower()


@dataclass(frozen=True)
class HfRef:
    repo: str  # owner/name
    path: str
    revision: str = "main"


@dataclass(frozen=True)
class CivitaiRef:
    model_id: int | None
    version_id: int | None
    query: str = ""  # of an /api/download URL (type, format, size, fp): which file of the version


@dataclass(frozen=True)
class UrlRef:
    url: str


Ref = HfRef | CivitaiRef | UrlRef


@dataclass(frozen=True)
class Hubs:
    """Base URLs of Hugging Face and Civitai (settings), to read and build their URLs."""

    huggingface: str = "https://huggingface.co"
    civitai: str = "https://civitai.com"

    def is_hf(self, url: str) -> bool:
        return _host_of(url) in _HF_HOSTS | {_host_of(self.huggingface)}

    def is_civitai(self, url: str) -> bool:
        return _host_of(url) in _CIVITAI_HOSTS | {_host_of(self.civitai)}

    def hf_url(self, ref: HfRef) -> str:
        base = self.huggingface.rstrip("/")
        return f"{base}/{ref.repo}/resolve/{quote(ref.revision, safe='')}/{quote(ref.path)}"

    def civitai_url(self, ref: CivitaiRef) -> str:
        assert ref.version_id is not None
        query = f"?{ref.query}" if ref.query else ""
        return f"{self.civitai.rstrip('/')}/api/download/models/{ref.version_id}{query}"


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.netloc or "").lower()


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def parse_ref(text: str, hubs: Hubs) -> Ref:
    """What a source text names (see the module docstring); bad text raises UnsafeSource."""
    value = text.strip()
    if value.startswith("hf://"):
        match = re.match(r"^hf://([^/@\s]+/[^/@\s]+)(?:@([^/\s]+))?/(\S+)$", value)
        if not match:
            raise UnsafeSource(
                f"not a Hugging Face source: {value!r}", hint="write hf://OWNER/REPO[@REV]/PATH"
            )
        ref = HfRef(match.group(1), match.group(3), match.group(2) or "main")
        check_url(hubs.hf_url(ref))
        return ref
    if value.startswith("civitai:"):
        match = re.match(r"^civitai:(\d+)?(?:@(\d+))?$", value)
        if not match or not (match.group(1) or match.group(2)):
            raise UnsafeSource(
                f"not a Civitai source: {value!r}",
                hint="write civitai:MODEL or civitai:MODEL@VERSION",
            )
        return CivitaiRef(_int(match.group(1)), _int(match.group(2)))
    url = check_url(value)
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if hubs.is_hf(url) and len(segments) >= 5 and segments[2] in {"resolve", "blob"}:
        return HfRef(f"{segments[0]}/{segments[1]}", "/".join(segments[4:]), segments[3])
    if hubs.is_civitai(url):
        query = parse_qs(parts.query)
        if segments[:3] == ["api", "download", "models"] and len(segments) == 4:
            return CivitaiRef(None, _int(segments[3]), parts.query)
        if segments[:1] == ["models"] and len(segments) >= 2 and segments[1].isdigit():
            version = _int((query.get("modelVersionId") or [""])[0])
            return CivitaiRef(int(segments[1]), version)
    return UrlRef(url)


@dataclass(frozen=True)
class ModelSource:
    """One place a model file can come from, and where it goes on the instance."""

    kind: SourceKind
    url: str
    folder: str
    filename: str  # relative to the folder; `/` subfolders allowed
    sha256: str | None = None
    needs_token: bool = False  # Civitai downloads, gated or private Hugging Face repos
    origin: SourceOrigin = "user"
    ref: Ref | None = None

    @property
    def spec(self) -> str:
        """The short text that names this source (`hf://...`, `civitai:M@V`, or the URL)."""
        if isinstance(self.ref, HfRef):
            rev = "" if self.ref.revision == "main" else f"@{self.ref.revision}"
            return f"hf://{self.ref.repo}{rev}/{self.ref.path}"
        if isinstance(self.ref, CivitaiRef) and not self.ref.query:
            model = self.ref.model_id if self.ref.model_id is not None else ""
            return f"civitai:{model}@{self.ref.version_id}"
        return self.url

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "spec": self.spec,
            "folder": self.folder,
            "filename": self.filename,
            "sha256": self.sha256,
            "needs_token": self.needs_token,
            "origin": self.origin,
        }


def make_source(
    ref: Ref,
    *,
    folder: str,
    filename: str,
    hubs: Hubs,
    origin: SourceOrigin,
    sha256: str | None = None,
    needs_token: bool | None = None,
) -> ModelSource:
    """A checked ModelSource for a complete ref (a Civitai ref needs its version)."""
    check_filename(filename)
    digest = check_sha256(sha256) if sha256 else None
    kind: SourceKind
    if isinstance(ref, HfRef):
        url, kind, token = hubs.hf_url(ref), "huggingface", bool(needs_token)
    elif isinstance(ref, CivitaiRef):
        if ref.version_id is None:
            raise UnsafeSource(
                f"Civitai model {ref.model_id} has no version to download",
                hint="write civitai:MODEL@VERSION",
            )
        url, kind, token = hubs.civitai_url(ref), "civitai", needs_token is not False
    else:
        url, kind, token = ref.url, "url", bool(needs_token)
    check_url(url)
    return ModelSource(kind, url, folder, filename.replace("\\", "/"), digest, token, origin, ref)
