"""Sandbox instance hosts: one process per simulated Vast instance, laid out like its image.

A host serves SSH (asyncssh: key auth against a re-read authorized_keys file, exec, PTY,
port forwarding, SFTP), runs the sandbox ComfyUI with its own venv's python on an internal
port after a simulated provisioning delay, and fronts it with a token-checking proxy like
the image's Caddy. Its layout, env vars, `nvidia-smi`, `supervisorctl` and two Pythons (venv
and "system") behave as on Vast's ComfyUI image, rooted in a folder (see `layout`).

    spec = HostSpec(instance_id=..., root=..., authorized_keys_file=..., web_token=..., ...)
    host = start_host(spec)          # own process
    host.wait_ready(30)              # SSH and proxy listening
    host.ssh_port, host.proxy_port, host.comfy_port
    host.drop_ssh(); host.refuse_ssh(60); host.move_ssh(); host.rotate_host_key()
    host.stop()

This module imports nothing heavy: the host's servers load only in the host process.
"""

from __future__ import annotations

from comfyfleet.sandbox.host.launcher import HostProcess, start_host
from comfyfleet.sandbox.host.spec import Endpoints, HostSpec

__all__ = ["Endpoints", "HostProcess", "HostSpec", "start_host"]
