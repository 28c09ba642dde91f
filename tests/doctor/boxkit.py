"""A rented sandbox instance for the doctor and queue tests: the simulated cloud with real
host processes, one instance made ready by `services.up`, and ways to act on it as a user
(SSH commands, the ComfyUI knobs through its token proxy, custom node packs, restarts)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from comfyfleet.comfy.client import ComfyClient
from comfyfleet.config import load_settings
from comfyfleet.remote.commands import Completed, run
from comfyfleet.sandbox.vast.knobs import Durations, VastKnobs
from comfyfleet.sandbox.vast.server import SandboxVast
from comfyfleet.services import instance_ops
from comfyfleet.services.cloud import Cloud, CloudConfig, open_cloud
from comfyfleet.services.doctor import DoctorOptions, DoctorReport, doctor
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.remote_ops import open_session
from comfyfleet.services.up import UpRequest, up
from comfyfleet.state import InstanceRow

SPEED = 100.0
QUICK = Durations(scheduling=5.0, loading=30.0, cached_loading=10.0, provisioning=30.0, reboot=5.0)


def chain(color: int, blur: bool = True) -> dict[str, Any]:
    """A small image prompt (EmptyImage -> ImageBlur -> SaveImage) with a real output file."""
    prompt: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color},
        },
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2" if blur else "1", 0], "filename_prefix": f"c{color}"},
        },
    }
    if blur:
        prompt["2"] = {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0},
        }
    return prompt


@dataclass
class Box:
    """The instance `box` and the cloud it runs in."""

    cloud: Cloud
    sky: SandboxVast
    row: InstanceRow
    ref: str = "box"

    @property
    def root(self) -> Path:
        assert self.row.vast_id is not None
        return self.sky.hosts.root(self.row.vast_id).resolve()

    @property
    def comfy_dir(self) -> Path:
        return self.root / "workspace" / "ComfyUI"

    @property
    def venv_bin(self) -> Path:
        return self.root / "venv" / "main" / "bin"

    def opener(self) -> Any:
        """A CloudOpener handing out this (already open) cloud."""

        @contextlib.asynccontextmanager
        async def same() -> AsyncIterator[Cloud]:
            yield self.cloud

        def opener() -> AbstractAsyncContextManager[Cloud]:
            return same()

        return opener

    def endpoint(self) -> tuple[str, str]:
        found = comfy_endpoint(self.cloud, self.row)
        assert found is not None
        return found.url, found.token

    def client(self, client_id: str | None = None) -> ComfyClient:
        url, token = self.endpoint()
        return ComfyClient(url, token=token, clock=self.cloud.clock, client_id=client_id)

    async def sh(self, script: str, *, check: bool = True) -> Completed:
        """Run a shell command line on the instance over SSH (as `comfyfleet exec` does)."""
        async with open_session(self.cloud, self.ref) as session:
            done = await run(session.conn, script, timeout=120)
        if check:
            assert done.exit_code == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done

    async def venv_pip(self, *args: str) -> Completed:
        return await self.sh(shlex.join([str(self.venv_bin / "python"), "-m", "pip", *args]))

    async def knobs(self, body: dict[str, Any]) -> dict[str, Any]:
        url, token = self.endpoint()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            answer = await http.post(f"{url}/__sandbox/knobs", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    async def restart(self) -> None:
        await instance_ops.restart(self.cloud, self.ref)

    def add_pack(self, name: str, code: str) -> Path:
        folder = self.comfy_dir / "custom_nodes" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(code)
        return folder

    async def doctor(self, **options: Any) -> DoctorReport:
        options.setdefault("watch", 5.0)
        return await doctor(
            self.ref,
            self.cloud.settings,
            open_cloud=self.opener(),
            options=DoctorOptions(**options),
        )

    async def wait_history(self, prompt_ids: list[str], timeout: float = 30.0) -> dict[str, Any]:
        """Until every prompt is in the history (real seconds); their entries."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with self.client() as client:
            while True:
                entries = {p: await client.history(p) for p in prompt_ids}
                if all(entries.values()):
                    return entries
                assert asyncio.get_running_loop().time() < deadline, (
                    f"not all finished: {[p for p, e in entries.items() if e is None]}"
                )
                await asyncio.sleep(0.1)


def pack_importing(module: str, node: str) -> str:
    """A custom node pack whose import needs `module`, offering one node class."""
    return (
        f"import {module}\n\n\n"
        f"class {node}:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        '        return {"required": {"text": ("STRING", {"default": "x"})}}\n\n'
        '    RETURN_TYPES = ("STRING",)\n'
        '    FUNCTION = "run"\n'
        '    CATEGORY = "tests"\n\n'
        "    def run(self, text):\n"
        "        return (text,)\n\n\n"
        f'NODE_CLASS_MAPPINGS = {{"{node}": {node}}}\n'
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def box(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Box]:
    """One ready instance for a whole test module (its tests leave it healthy again).

    The host processes inherit this process's environment: they get a home of their own
    here, set before any per-test home exists."""
    base = tmp_path_factory.mktemp("box")
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith("COMFYFLEET_") and var != "COMFYFLEET_SHARED_DIR":
                mp.delenv(var)
        mp.delenv("VAST_API_KEY", raising=False)
        mp.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        mp.setenv("HOME", str(base / "home"))
        for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache")):
            mp.setenv(var, str(base / "home" / sub))
        mp.setenv("XDG_DATA_HOME", str(base / "home" / ".local" / "share"))
        env = {
            "COMFYFLEET_PATHS__CONFIG_DIR": str(base / "config"),
            "COMFYFLEET_PATHS__DATA_DIR": str(base / "data"),
            "COMFYFLEET_VAST__POLL_INTERVAL": "5",
            "COMFYFLEET_VAST__READY_TIMEOUT": "900",
        }
        settings = load_settings(env=env, config_file=base / "none.toml")
        knobs = VastKnobs(QUICK)
        async with SandboxVast(base / "sky", speed=SPEED, knobs=knobs, hosts=True) as sky:
            config = CloudConfig("sandbox", sky.url, sky.api_key, sky.clock, base / "d", settings)
            async with open_cloud(config) as cloud:
                result = await up(cloud, UpRequest(order="dph_total", name="box"), _quiet)
                yield Box(cloud, sky, result.row)


def _quiet(_line: str) -> None:
    pass
