"""The torch guard's layers one by one, on a sandbox instance's real venv and pip.

The dry run is bypassed on purpose here: the constraints layer must hold on its own, and
the before/after layer must put back whatever changed however it changed.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import pytest
import pytest_asyncio

from comfyfleet.control.protected import ProtectedSet
from comfyfleet.errors import ProtectedRolledBack, RequirementsFailed
from comfyfleet.remote import manage
from comfyfleet.remote.layout import InstanceLayout
from comfyfleet.services.nodes import install_pack
from comfyfleet.services.remote_ops import Session, open_session
from comfyfleet.services.torch_guard import TorchGuard

from .conftest import Box
from .packs import make_pack, node_source

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(loop_scope="module")
async def opened(box: Box) -> AsyncIterator[tuple[Session, InstanceLayout]]:
    async with open_session(box.cloud, box.ref) as session:
        yield session, await session.layout(box.cloud)


def guard_of(opened: tuple[Session, InstanceLayout], *extra: str) -> TorchGuard:
    session, layout = opened
    return TorchGuard(session.conn, layout, ProtectedSet(extra))


async def raw_pip(opened: tuple[Session, InstanceLayout], *args: str) -> str:
    """The venv's pip, straight: no plan, no constraints (what a careless tool does)."""
    session, layout = opened
    out: list[str] = []
    code = await manage.pip(session.conn, layout, list(args), out.append, out.append)
    assert code == 0, "".join(out)
    return "".join(out)


async def test_the_before_after_layer_puts_back_what_changed_anyway(
    opened: tuple[Session, InstanceLayout],
) -> None:
    guard = guard_of(opened, "onnxruntime*")
    before = await guard.snapshot()
    assert before["torch"] == ("torch", "2.8.0+cu128")
    assert "onnxruntime" not in before
    await raw_pip(opened, "install", "torch==2.7.1", "onnxruntime")
    assert (await guard.snapshot())["torch"][1] == "2.7.1+cu128"
    lines: list[str] = []
    guard.on_line = lines.append
    changed = await guard.verify(before)
    shown = {c.describe() for c in changed}
    assert "torch 2.8.0+cu128 -> 2.7.1+cu128" in shown
    assert "triton 3.4.0 -> 3.3.1" in shown
    assert "onnxruntime (not installed) -> 1.22.1" in shown
    assert await guard.snapshot() == before, "every protected package is back"
    assert any(line.startswith("PROTECTED PACKAGE CHANGED: torch") for line in lines)
    assert await guard.verify(before) == [], "nothing left to put back"


async def test_the_constraints_layer_holds_without_the_dry_run(
    opened: tuple[Session, InstanceLayout], box: Box
) -> None:
    guard = guard_of(opened)
    before = await guard.snapshot()
    folder = box.root / "tmp" / "pins"
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text("einops\ntorch==2.7.1\n")
    where = PurePosixPath(folder.as_posix())
    with pytest.raises(RequirementsFailed) as caught:
        await guard.install(where / "requirements.txt", where, before)
    assert "torch==2.7.1" in str(caught.value)
    assert await guard.snapshot() == before
    leftovers = [p.name for p in Path("/tmp").glob("comfyfleet-constraints.*")]
    leftovers += [p.name for p in (box.root / "tmp").glob("comfyfleet-constraints.*")]
    assert leftovers == [], "the constraints file is removed when pip ends"


SNEAKY_BACKEND = textwrap.dedent(
    """
    import os, subprocess, sys, zipfile

    def get_requires_for_build_wheel(config_settings=None):
        return []

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        # What a careless setup script does: its own pip, outside the resolver.
        env = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k == "PATH"}
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "torch==2.7.1"],
            env=env, check=True,
        )
        name, info = "helper-1.0-py3-none-any.whl", "helper-1.0.dist-info"
        files = {
            "helper.py": "",
            f"{info}/METADATA": "Metadata-Version: 2.1\\nName: helper\\nVersion: 1.0\\n",
            f"{info}/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
            f"{info}/RECORD": "",
        }
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
            for path, text in files.items():
                zf.writestr(path, text)
        return name
    """
)


async def test_a_pack_whose_build_changes_torch_is_rolled_back_and_removed(
    opened: tuple[Session, InstanceLayout], box: Box, tmp_path: Path
) -> None:
    guard = guard_of(opened)
    before = await guard.snapshot()
    url = make_pack(
        tmp_path,
        "sneaky",
        {
            "__init__.py": node_source("Sneaky"),
            "requirements.txt": "./helper\n",
            "helper/pyproject.toml": (
                '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
            ),
            "helper/backend.py": SNEAKY_BACKEND,
        },
    )
    with pytest.raises(ProtectedRolledBack) as caught:
        await install_pack(box.cloud, box.ref, url)
    message = str(caught.value)
    assert message.startswith("ROLLED BACK:")
    assert "torch 2.8.0+cu128 -> 2.7.1+cu128" in message and "sneaky was not installed" in message
    assert await guard.snapshot() == before
    assert not (box.custom_nodes / "sneaky").exists()
