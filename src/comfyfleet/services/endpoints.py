"""An instance's public ComfyUI endpoint: its token proxy's URL and the derived token."""

from __future__ import annotations

from dataclasses import dataclass

from comfyfleet.models.vast import Instance
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.secrets import web_token
from comfyfleet.state.rows import InstanceRow, tracking_tag

COMFY_PORT = 8188  # the container port of ComfyUI's token proxy on Vast's image


@dataclass(frozen=True)
class Endpoint:
    """The public ComfyUI endpoint of an instance (Vast's proxy port), with its token."""

    url: str
    token: str


def comfy_endpoint(cloud: Cloud, row: InstanceRow | Instance) -> Endpoint | None:
    """The ComfyUI URL through the instance's token proxy, once Vast reports its port."""
    if isinstance(row, Instance):
        port, host, label = row.host_port(COMFY_PORT), row.public_ipaddr, row.label
    else:
        port = row.comfy_port or row.ports.get(f"{COMFY_PORT}/tcp")
        host, label = row.public_ip, row.label
    tag = tracking_tag(label)
    if not port or not host or tag is None:
        return None
    token = web_token(cloud.settings.config_dir(), tag)
    return Endpoint(f"http://{host}:{port}", token)
