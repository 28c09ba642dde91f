"""Templates the simulated cloud knows: Vast's recommended ComfyUI template (reference §8.3).

A create with `template_hash_id` takes image, env, onstart and runtype from the template;
fields in the request override them, and env is merged by key with the request winning.
"""

from __future__ import annotations

from typing import Any

PORTAL_CONFIG = (
    "localhost:1111:11111:/:Instance Portal|localhost:8188:18188:/:ComfyUI|"
    "localhost:8288:18288:/docs:API Wrapper|localhost:8080:18080:/:Jupyter|"
    "localhost:8080:8080:/terminals/1:Jupyter Terminal|localhost:8384:18384:/:Syncthing"
)

COMFYUI_TEMPLATE: dict[str, Any] = {
    "id": 312345,
    "hash_id": "c0ffee00deadbeef0123456789abcdef",
    "name": "ComfyUI",
    "image": "vastai/comfy",
    "tag": "v0.8.2-cuda-12.9-py312",
    "default_tag": "v0.8.2-cuda-12.9-py312",
    "href": "https://hub.docker.com/r/vastai/comfy",
    "repo": "vastai/comfy",
    "env": (
        "-p 1111:1111 -p 8080:8080 -p 8188:8188 -p 8288:8288 -p 8384:8384 "
        "-e OPEN_BUTTON_PORT=1111 -e OPEN_BUTTON_TOKEN=1 -e JUPYTER_DIR=/ "
        "-e DATA_DIRECTORY=/workspace/ "
        "-e COMFYUI_ARGS='--disable-auto-launch --port 18188 --enable-cors-header' "
        f"-e PORTAL_CONFIG='{PORTAL_CONFIG}'"
    ),
    "onstart": "entrypoint.sh",
    "runtype": "jupyter",
    "jup_direct": True,
    "ssh_direct": True,
    "use_ssh": True,
    "use_jupyter_lab": False,
    "jupyter_dir": "/",
    "docker_login_repo": None,
    "extra_filters": {"compute_cap": {"gte": 750}},
    "recommended_disk_space": 40,
    "readme": "ComfyUI with the Instance Portal, Jupyter and Syncthing.",
    "readme_visible": True,
    "desc": "ComfyUI: node-based Stable Diffusion and video generation UI",
    "private": False,
    "recommended": True,
    "count_created": 123456,
    "created_at": 1_735_689_600.0,
    "recent_create_date": 1_764_288_000.0,
    "creator_id": 62897,
}

TEMPLATES: tuple[dict[str, Any], ...] = (COMFYUI_TEMPLATE,)


def by_hash(hash_id: str) -> dict[str, Any] | None:
    return next((t for t in TEMPLATES if t["hash_id"] == hash_id), None)


def runtype_of(template: dict[str, Any]) -> str:
    """The image_runtype a template launches with ("_direc" spelling, proxy SSH kept)."""
    if "jupyter" in str(template.get("runtype")):
        return (
            "jupyter_direc ssh_direc ssh_proxy"
            if template.get("jup_direct")
            else "jupyter_proxy ssh_proxy"
        )
    if template.get("ssh_direct"):
        return "ssh_direc ssh_proxy"
    return "ssh ssh_proxy"
