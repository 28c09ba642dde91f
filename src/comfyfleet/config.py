"""Typed settings, loaded once at the CLI edge and passed down.

Precedence (documented once, here and in README "Configuration"):

    command-line flags  >  COMFYFLEET_* environment variables  >  config file  >  defaults

The config file is TOML at `<platform config dir>/config.toml` (or `COMFYFLEET_CONFIG`).
Its tables are the groups below; environment variables name `COMFYFLEET_<GROUP>__<KEY>`
for a group key and `COMFYFLEET_<KEY>` for a top-level key, e.g. `COMFYFLEET_COMFY__TOKEN`,
`COMFYFLEET_PROFILE`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from comfyfleet.errors import ConfigError

ENV_PREFIX = "COMFYFLEET_"


def env_list(value: Any, *, split_commas: bool) -> Any:
    """A list setting given as one string (an environment variable): a JSON list, else
    comma-separated items (`split_commas`) or a single item. Other values pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        import json

        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a JSON list: {exc}") from exc
    if split_commas:
        return [part.strip() for part in text.split(",") if part.strip()]
    return [text] if text else []


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComfySettings(_Group):
    """How comfyfleet talks to ComfyUI servers."""

    token: SecretStr | None = None  # bearer token for a proxy in front of ComfyUI (Vast's Caddy)
    connect_timeout: float = Field(10.0, gt=0)  # seconds to open a connection
    request_timeout: float = Field(120.0, gt=0)  # seconds for one HTTP request (uploads included)
    ws_reconnect_attempts: int = Field(8, ge=0)  # reconnects of a dropped event stream per job
    poll_interval: float = Field(
        2.0, gt=0
    )  # seconds between /history polls while the socket is down


class RunSettings(_Group):
    """Defaults for `comfyfleet run`."""

    out_dir: Path = Path("outputs")  # downloads go to <out_dir>/<job-id>/
    timeout: float = Field(3600.0, gt=0)  # seconds a job may take from submit to last output


class BackupSettings(_Group):
    """Workflow backups to git (`comfyfleet backup`, `restore`, and before `stop`/`destroy`)."""

    repo: Path | None = None  # the backup repository; default: <data dir>/workflow-backup
    auto: bool = True  # back up before `stop` and `destroy` (`--no-backup` skips it once)
    timeout: float = Field(30.0, gt=0)  # seconds the backup before stop/destroy may take
    # more widget or key names whose values are secrets (case-insensitive, whole names)
    scrub_names: list[str] = Field(default_factory=list)
    # more regular expressions for secret values, wherever they appear in a workflow
    scrub_patterns: list[str] = Field(default_factory=list)

    @field_validator("scrub_names", "scrub_patterns", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any, info: ValidationInfo) -> Any:
        # Patterns may hold commas themselves: one environment value is one pattern.
        return env_list(value, split_commas=info.field_name == "scrub_names")

    @field_validator("scrub_patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        import re

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc
        return value


class VastSettings(_Group):
    """Renting on Vast.ai (`comfyfleet offers`, `up`)."""

    base_url: str = "https://console.vast.ai"  # the API; the sandbox profile replaces it
    image: str = "vastai/comfy:v0.8.2-cuda-12.9-py312"  # Vast's ComfyUI image
    disk_gb: float = Field(60.0, gt=0)  # container disk, fixed for the instance's life
    min_reliability: float = Field(0.98, ge=0, le=1)
    min_inet_down: float = Field(200.0, ge=0)  # Mb/s
    ready_timeout: float = Field(1800.0, gt=0)  # seconds from create to ComfyUI answering
    poll_interval: float = Field(5.0, gt=0)  # seconds between status polls while waiting
    max_offers: int = Field(3, ge=1)  # offers tried by `up` before giving up
    # a pending create intent whose process is still alive is left alone this long (seconds)
    intent_grace: float = Field(900.0, gt=0)


_MANAGER_RAW = "https://raw.githubusercontent.com/Comfy-Org/ComfyUI-Manager/main"


class CatalogSettings(_Group):
    """Where node packs and model files are looked up (`comfyfleet workflow deps`).

    Every base URL is configurable so a mirror (or a test's stand-in) can replace it.
    """

    node_map_url: str = f"{_MANAGER_RAW}/extension-node-map.json"  # ComfyUI-Manager's class map
    node_list_url: str = f"{_MANAGER_RAW}/custom-node-list.json"  # its node pack list
    model_list_url: str = f"{_MANAGER_RAW}/model-list.json"  # its model list
    registry_url: str = "https://api.comfy.org"  # the Comfy Registry API
    registry: bool = True  # ask the registry about classes the catalogs do not settle
    huggingface_url: str = "https://huggingface.co"
    civitai_url: str = "https://civitai.com"
    ttl: float = Field(86400.0, ge=0)  # seconds a fetched catalog is used before asking again
    timeout: float = Field(20.0, gt=0)  # seconds for one catalog request
    offline: bool = False  # never ask the network: cached or shipped copies only
    cache_dir: Path | None = None  # default: <cache dir>/catalog
    models_manifest: Path | None = None  # your file names -> URLs; default <config dir>/models.toml


class RemoteSettings(_Group):
    """SSH to instances: keys, ssh config, layout overrides (`comfyfleet ssh`, `connect`...)."""

    key_path: Path | None = None  # your own private key; default: comfyfleet's ed25519 key
    ssh_config: Path | None = None  # the ~/.ssh/config to add our Include to (None: ~/.ssh/config)
    manage_ssh_config: bool = True  # add the Include line and per-instance files
    keepalive: float = Field(30.0, gt=0)  # seconds between keepalives (3 missed = dead)
    # Seconds to wait while another comfyfleet command changes the same instance (node packs,
    # pip installs): changes take turns; 0 fails at once.
    change_wait: float = Field(900.0, ge=0)
    # Layout overrides: each given value wins over detection on the instance.
    comfy_dir: str | None = None
    comfy_port: int | None = None
    venv: str | None = None
    log_file: str | None = None
    restart_command: str | None = None


class NodesSettings(_Group):
    """Custom node packs on instances (`comfyfleet nodes`): the torch guard and time limits.

    torch, torchvision, torchaudio, torchsde, xformers, triton and nvidia-* are always
    protected; `protected` adds names or globs (`onnxruntime*`), compared case- and
    `-`/`_`/`.`-insensitively.
    """

    protected: list[str] = Field(default_factory=list)  # more protected packages (names/globs)
    clone_timeout: float = Field(600.0, gt=0)  # seconds for a git clone, fetch or submodule update
    pip_timeout: float = Field(1800.0, gt=0)  # seconds pip may take for a pack's requirements
    restart_timeout: float = Field(600.0, gt=0)  # seconds (the cloud's clock) until ComfyUI answers
    log_lines: int = Field(3000, ge=100)  # lines of ComfyUI's log read to find a pack's import

    @field_validator("protected", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return env_list(value, split_commas=True)

    @field_validator("protected")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9*?._\[\]-]+", name):
                raise ValueError(f"not a package name or glob: {name!r}")
        return value


class DownloadSettings(_Group):
    """Model downloads run on instances (`comfyfleet models pull`).

    Tokens are secrets: never logged, never in argv or a file on the instance. Unset here,
    they are taken from the variables the hubs' own tools read (HF_TOKEN, CIVITAI_TOKEN).
    """

    huggingface_token: SecretStr | None = None  # gated or private Hugging Face repositories
    civitai_token: SecretStr | None = None  # Civitai downloads (civitai.com/user/account)
    retries: int = Field(3, ge=0)  # resumed attempts after a dropped or stalled transfer
    stall_timeout: float = Field(120.0, gt=0)  # seconds under 1 KiB/s before a retry
    connect_timeout: float = Field(30.0, gt=0)  # seconds to reach the download server
    reserve_mb: float = Field(256.0, ge=0)  # free space a download must leave on the disk


class PathSettings(_Group):
    """Where comfyfleet keeps its own files (defaults: the platform's dirs)."""

    config_dir: Path | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None


class Settings(_Group):
    """Every setting, by group."""

    profile: Literal["default", "sandbox"] = "default"  # real Vast, or the running sandbox
    db_url: str | None = None  # COMFYFLEET_DB_URL: PostgreSQL URL; default a SQLite file
    comfy: ComfySettings = ComfySettings()
    vast: VastSettings = VastSettings()
    remote: RemoteSettings = RemoteSettings()
    run: RunSettings = RunSettings()
    backup: BackupSettings = BackupSettings()
    paths: PathSettings = PathSettings()
    catalog: CatalogSettings = CatalogSettings()
    downloads: DownloadSettings = DownloadSettings()
    nodes: NodesSettings = NodesSettings()

    def config_dir(self) -> Path:
        return self.paths.config_dir or Path(_platform_dir("user_config_dir"))

    def data_dir(self) -> Path:
        return self.paths.data_dir or Path(_platform_dir("user_data_dir"))

    def cache_dir(self) -> Path:
        return self.paths.cache_dir or Path(_platform_dir("user_cache_dir"))


def _platform_dir(kind: str) -> str:
    import platformdirs

    return str(getattr(platformdirs, kind)("comfyfleet", appauthor=False))


def default_config_file(env: Mapping[str, str]) -> Path:
    """The config file path: `COMFYFLEET_CONFIG`, else `<platform config dir>/config.toml`."""
    explicit = env.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return Path(_platform_dir("user_config_dir")) / "config.toml"


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc}", hint="fix the TOML or move the file away"
        ) from exc


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups = {
        name
        for name, f in Settings.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    }
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if "__" in name:
            group, sub = name.split("__", 1)
            if group in groups:
                out.setdefault(group, {})[sub] = value
        elif name in Settings.model_fields and name not in groups:
            out[name] = value
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build Settings from defaults < file < env < flags; bad values raise ConfigError."""
    env = os.environ if env is None else env
    path = config_file or default_config_file(env)
    layers: dict[str, Any] = {}
    for source in (_read_file(path), _from_env(env), flags or {}):
        layers = _merge(layers, source)
    try:
        return Settings.model_validate(layers)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings ({problems})",
            hint=f"check {path}, COMFYFLEET_* environment variables and command-line flags",
        ) from exc
