"""What a host is asked to be (`HostSpec`) and where it listens once up (`Endpoints`).

Both travel as JSON files inside the host's root: the launcher writes the spec, the host
process writes its endpoints (atomically, once it listens, and again when a knob moves SSH).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from comfyfleet.errors import SandboxError

SPEC_FILE = ".sandbox-host-spec.json"
ENDPOINTS_FILE = ".sandbox-host.json"


@dataclass(frozen=True)
class HostSpec:
    """One simulated Vast instance: its folder, keys, token, environment and GPUs."""

    instance_id: int
    root: Path
    authorized_keys_file: Path
    web_token: str
    env: dict[str, str]
    speed: float
    gpu_name: str
    num_gpus: int
    image: str
    provisioning_seconds: float = 60.0  # simulated; ComfyUI starts after it (first boot only)

    def to_json(self) -> str:
        data = asdict(self)
        data["root"] = str(self.root)
        data["authorized_keys_file"] = str(self.authorized_keys_file)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> HostSpec:
        try:
            data = json.loads(text)
            return cls(
                instance_id=int(data["instance_id"]),
                root=Path(data["root"]),
                authorized_keys_file=Path(data["authorized_keys_file"]),
                web_token=str(data["web_token"]),
                env={str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
                speed=float(data["speed"]),
                gpu_name=str(data["gpu_name"]),
                num_gpus=int(data["num_gpus"]),
                image=str(data["image"]),
                provisioning_seconds=float(data.get("provisioning_seconds", 60.0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SandboxError(f"bad host spec: {exc}") from exc


@dataclass(frozen=True)
class Endpoints:
    """Where a running host listens (all on 127.0.0.1) and who it is."""

    pid: int
    ssh_port: int
    proxy_port: int
    comfy_port: int
    control_port: int
    host_key_fingerprint: str

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    def write(self, root: Path) -> None:
        write_private(root / ENDPOINTS_FILE, json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, root: Path) -> Endpoints | None:
        """The endpoints file of `root`, or None when there is none (or it is half written)."""
        try:
            data = json.loads((root / ENDPOINTS_FILE).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
