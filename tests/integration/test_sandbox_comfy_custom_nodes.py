"""Custom node packs in the sandbox ComfyUI: loaded, reported, validated and run like ComfyUI."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfyfleet.sandbox.comfy import SandboxComfy

pytestmark = pytest.mark.timeout(60)

EXAMPLE_PACK = Path(__file__).resolve().parents[1] / "data" / "comfy_packs" / "text_tools"
SKIP = (
    "Skip {} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or NODES_LIST "
    "(need one)."
)
TIME_LINE = re.compile(r"^( {0,3}\d+\.\d) seconds( \(IMPORT FAILED\))?: (.+)$")

SNEAKY = """
class SaveImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True


class SneakyNode(SaveImage):
    CATEGORY = "sneaky"


NODE_CLASS_MAPPINGS = {"SaveImage": SaveImage, "SneakyNode": SneakyNode}
"""


LATE = """
class Late:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "go"


NODE_CLASS_MAPPINGS = {"LateNode": Late}
"""


def write_packs(custom_nodes: Path) -> None:
    """The example pack and the broken ones of the capture's second run, and then some."""
    shutil.copytree(EXAMPLE_PACK, custom_nodes / "text_tools")
    files = {
        "syntax_pack/__init__.py": "def broken(:\n    pass\n",
        "needs_x/__init__.py": "import x\n\nNODE_CLASS_MAPPINGS = {}\n",
        "no_mappings.py": "VALUE = 1\n",
        "sneaky/__init__.py": SNEAKY,
        "old_pack.disabled/__init__.py": "raise RuntimeError('a disabled pack was imported')\n",
        "notes.txt": "not a module\n",
        "__pycache__/stale.py": "raise RuntimeError('__pycache__ was imported')\n",
        "warm_up/__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
        "warm_up/prestartup_script.py": (
            "import pathlib\n\n"
            "pathlib.Path(__file__).with_name('prestartup-ran').write_text('yes')\n"
        ),
        "needs_gpu/__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
        "needs_gpu/prestartup_script.py": "raise RuntimeError('no GPU here')\n",
    }
    for rel, text in files.items():
        path = custom_nodes / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


class Api:
    def __init__(self, server: SandboxComfy, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def get(self, path: str) -> Any:
        async with self.session.get(self.server.url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.server.url + path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async def run(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """Queue a prompt and wait for its history entry."""
        status, body = await self.post("/prompt", {"prompt": prompt, "client_id": "tester"})
        assert status == 200, body
        prompt_id = body["prompt_id"]
        for _ in range(400):
            entry = await self.get(f"/history/{prompt_id}")
            if entry:
                result: dict[str, Any] = entry[prompt_id]
                return result
            await asyncio.sleep(0.02)
        raise AssertionError(f"prompt {prompt_id} never finished")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    root = tmp_path / "ComfyUI"
    write_packs(root / "custom_nodes")
    async with (
        SandboxComfy(root, speed=50.0) as server,
        aiohttp.ClientSession() as session,
    ):
        yield Api(server, session)


async def test_object_info_entries_are_derived_like_comfyuis_node_info(api: Api) -> None:
    info = await api.get("/object_info/TextToolsRepeat")
    entry = info["TextToolsRepeat"]
    assert entry == {
        "input": {
            "required": {
                "text": ["STRING", {"multiline": True, "default": "hello"}],
                "times": ["INT", {"default": 2, "min": 1, "max": 10}],
            },
            "optional": {"separator": ["STRING", {"default": " "}]},
        },
        "input_order": {"required": ["text", "times"], "optional": ["separator"]},
        "output": ["STRING", "INT"],
        "output_is_list": [False, False],
        "output_name": ["text", "length"],
        "name": "TextToolsRepeat",
        "display_name": "Repeat Text",
        "description": "Repeats a text.",
        "python_module": "custom_nodes.text_tools",
        "category": "text_tools",
        "output_node": False,
    }
    # Key order is ComfyUI's (the frontend does not care, but a byte-level diff would).
    assert list(entry) == [
        "input", "input_order", "output", "output_is_list", "output_name", "name",
        "display_name", "description", "python_module", "category", "output_node",
    ]  # fmt: skip
    everything = await api.get("/object_info")
    assert everything["TextToolsSplit"]["output_is_list"] == [True]
    assert everything["TextToolsShow"]["output_node"] is True
    assert everything["TextToolsScale"]["display_name"] == "TextToolsScale"
    # Built-in names cannot be taken over; the pack's other class is there.
    assert everything["SaveImage"]["python_module"] == "nodes"
    assert "filename_prefix" in everything["SaveImage"]["input"]["required"]
    assert everything["SneakyNode"]["python_module"] == "custom_nodes.sneaky"
    assert everything["SaveImageWebsocket"]["python_module"] == "custom_nodes.websocket_image_save"
    assert [k for k in everything if k.startswith("TextTools")] == [
        "TextToolsRepeat", "TextToolsScale", "TextToolsFormat", "TextToolsShow",
        "TextToolsSplit", "TextToolsUpper", "TextToolsCard",
    ]  # fmt: skip


def _import_block(log: str) -> list[tuple[float, bool, str]]:
    lines = log.split("\n")
    start = lines.index("Import times for custom nodes:")
    assert lines[start - 1] == ""
    rows: list[tuple[float, bool, str]] = []
    for line in lines[start + 1 :]:
        if not line:
            break
        match = TIME_LINE.match(line)
        assert match and len(match.group(1)) == 6, line
        rows.append((float(match.group(1)), bool(match.group(2)), match.group(3)))
    return rows


async def test_the_log_reports_each_pack_like_comfyui(api: Api) -> None:
    root = api.server.root.resolve()
    nodes = root / "custom_nodes"
    log = (root / "comfyui.log").read_text()

    rows = _import_block(log)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert {(path, failed) for _, failed, path in rows} == {
        (f"{nodes}/text_tools", False),
        (f"{nodes}/sneaky", False),
        (f"{nodes}/warm_up", False),
        (f"{nodes}/needs_gpu", False),
        (f"{nodes}/websocket_image_save.py", False),
        (f"{nodes}/no_mappings.py", True),
        (f"{nodes}/needs_x", True),
        (f"{nodes}/syntax_pack", True),
    }
    assert SKIP.format(f"{nodes}/no_mappings.py") + "\n" in log
    missing = (
        "Traceback (most recent call last):\n"
        f'  File "{root}/nodes.py", line 2131, in load_custom_node\n'
        "    module_spec.loader.exec_module(module)\n"
    )
    assert missing in log
    tail = (
        f'  File "{nodes}/needs_x/__init__.py", line 1, in <module>\n'
        "    import x\n"
        "ModuleNotFoundError: No module named 'x'\n"
        "\n"
        f"Cannot import {nodes}/needs_x module for custom nodes: No module named 'x'\n"
    )
    assert tail in log
    syntax = re.search(
        rf"SyntaxError: (.+)\n\nCannot import {re.escape(str(nodes))}/syntax_pack module for "
        r"custom nodes: (.+) \(__init__\.py, line 1\)\n",
        log,
    )
    assert syntax and syntax.group(1) == syntax.group(2)

    # Prestartup scripts run first, with their own block.
    assert (nodes / "warm_up" / "prestartup-ran").read_text() == "yes"
    failure = f"Failed to execute startup-script: {nodes}/needs_gpu/prestartup_script.py / no GPU"
    assert failure + " here\n" in log
    prestart = log.split("Prestartup times for custom nodes:\n", 1)[1].split("\n\n", 1)[0]
    assert sorted(line.split(": ", 1)[1] for line in prestart.split("\n")) == [
        f"{nodes}/needs_gpu",
        f"{nodes}/warm_up",
    ]
    assert f" (PRESTARTUP FAILED): {nodes}/needs_gpu" in prestart
    order = [
        "Prestartup times for custom nodes:",
        "Checkpoint files will always be loaded safely.",
        "[Prompt Server] web root:",
        SKIP.format(f"{nodes}/no_mappings.py"),
        "Import times for custom nodes:",
        "Starting server",
        "To see the GUI go to:",
    ]
    assert [log.index(text) for text in order] == sorted(log.index(text) for text in order)
    for never in ("old_pack", "notes.txt", "__pycache__", "a disabled pack was imported"):
        assert never not in log
    # The same text, entry by entry, at /internal/logs/raw.
    raw = await api.get("/internal/logs/raw")
    assert "".join(e["m"] for e in raw["entries"]) == log


async def test_pack_nodes_run_for_real_on_strings_ints_and_floats(api: Api) -> None:
    repeat = {"text": "ab", "times": 3, "separator": "-"}
    prompt = {
        "1": {"class_type": "TextToolsRepeat", "inputs": repeat},
        "2": {"class_type": "TextToolsShow", "inputs": {"text": ["1", 0]}},
        "3": {"class_type": "TextToolsScale", "inputs": {"number": ["1", 1], "factor": 0.5}},
        "4": {"class_type": "TextToolsFormat", "inputs": {"value": ["3", 0], "template": "{:.2f}"}},
        "5": {"class_type": "TextToolsShow", "inputs": {"text": ["4", 0]}},
    }
    entry = await api.run(prompt)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"] == {"2": {"text": ["ab-ab-ab"]}, "5": {"text": ["4.00"]}}
    # Unchanged inputs: everything comes from the cache the second time.
    again = await api.run(prompt)
    cached = next(m[1]["nodes"] for m in again["status"]["messages"] if m[0] == "execution_cached")
    assert sorted(cached) == ["1", "2", "3", "4", "5"]
    assert again["outputs"] == entry["outputs"]


async def test_list_outputs_map_the_nodes_downstream(api: Api) -> None:
    prompt = {
        "1": {"class_type": "TextToolsSplit", "inputs": {"text": "hello sandbox world"}},
        "2": {"class_type": "TextToolsUpper", "inputs": {"text": ["1", 0]}},
        "3": {"class_type": "TextToolsShow", "inputs": {"text": ["2", 0]}},
    }
    entry = await api.run(prompt)
    assert entry["outputs"] == {"3": {"text": ["HELLO", "SANDBOX", "WORLD"]}}


async def test_a_pack_image_feeds_save_image(api: Api) -> None:
    prompt = {
        "1": {"class_type": "TextToolsCard", "inputs": {"text": "hi", "width": 48, "height": 24}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "card"}},
    }
    entry = await api.run(prompt)
    [saved] = entry["outputs"]["2"]["images"]
    assert saved["filename"].startswith("card_") and saved["type"] == "output"
    async with api.session.get(api.server.url + "/view", params=saved) as resp:
        image = Image.open(io.BytesIO(await resp.read()))
    assert image.size == (48, 24)
    assert image.convert("RGB").getpixel((47, 23)) == (20, 40, 200)


async def test_validate_inputs_and_node_failures_are_comfyuis(api: Api) -> None:
    bad = {
        "1": {"class_type": "TextToolsRepeat", "inputs": {"text": "forbidden", "times": 11}},
        "2": {"class_type": "TextToolsShow", "inputs": {"text": ["1", 0]}},
    }
    status, body = await api.post("/prompt", {"prompt": bad})
    assert status == 400
    errors = body["node_errors"]["1"]["errors"]
    assert [(e["type"], e["details"]) for e in errors] == [
        ("value_bigger_than_max", "times"),
        ("custom_validation_failed", "text - the word 'forbidden' is not allowed"),
    ]
    failing = {
        "1": {"class_type": "TextToolsCard", "inputs": {"text": "x", "width": 4, "height": 4}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    entry = await api.run(failing)
    assert entry["status"]["status_str"] == "error"
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert (error["node_id"], error["node_type"]) == ("1", "TextToolsCard")
    assert error["exception_type"] == "ValueError"
    assert error["exception_message"] == "card too small: 4x4\n"
    assert error["traceback"][-1].startswith(f'  File "{api.server.root.resolve()}/custom_nodes/')
    assert "raise ValueError" in error["traceback"][-1]
    assert "result = f(**inputs)" in error["traceback"][-2]
    assert error["current_inputs"] == {"text": ["x"], "width": [4], "height": [4]}


async def test_pack_web_folders_are_served_as_extensions(api: Api) -> None:
    listed = await api.get("/extensions")
    assert "/extensions/text_tools/text_tools.js" in listed
    assert "/extensions/core/groupNode.js" in listed
    async with api.session.get(api.server.url + "/extensions/text_tools/text_tools.js") as resp:
        assert resp.status == 200
        assert (await resp.text()) == (EXAMPLE_PACK / "web" / "text_tools.js").read_text()


async def test_a_restart_picks_up_packs_added_since(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    server = SandboxComfy(root, speed=50.0)
    async with aiohttp.ClientSession() as session:
        api = Api(server, session)
        async with server:
            assert await api.get("/object_info/LateNode") == {}
        (root / "custom_nodes" / "late.py").write_text(LATE)
        async with server:
            info = await api.get("/object_info/LateNode")
            assert info["LateNode"]["python_module"] == "custom_nodes.late"
        # Edited code is imported afresh by the next start, not taken from sys.modules.
        code = (root / "custom_nodes" / "late.py").read_text()
        (root / "custom_nodes" / "late.py").write_text(code.replace('("STRING",)', '("INT",)'))
        async with server:
            info = await api.get("/object_info/LateNode")
            assert info["LateNode"]["output"] == ["INT"]
    log = (root / "comfyui.log").read_text()
    assert log.count("Import times for custom nodes:") == 3
    assert log.count(f"seconds: {root.resolve()}/custom_nodes/late.py") == 2


async def test_disabled_custom_nodes_and_the_whitelist(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    write_packs(root / "custom_nodes")
    async with aiohttp.ClientSession() as session:
        server = SandboxComfy(root, disable_custom_nodes=True, custom_node_whitelist=["text_tools"])
        async with server:
            info = await Api(server, session).get("/object_info")
            stats = await Api(server, session).get("/system_stats")
        assert "TextToolsRepeat" in info
        assert "SneakyNode" not in info and "SaveImageWebsocket" not in info
        assert "--disable-all-custom-nodes" in stats["system"]["argv"]
        log = (root / "comfyui.log").read_text()
        reason = "due to disable_all_custom_nodes and whitelist_custom_nodes"
        assert f"Skipping sneaky {reason}\n" in log
        assert f"Prestartup Skipping warm_up {reason}\n" in log
        assert f"seconds: {root.resolve()}/custom_nodes/text_tools\n" in log

        (root / "comfyui.log").unlink()
        async with SandboxComfy(root, disable_custom_nodes=True) as server:
            info = await Api(server, session).get("/object_info")
        assert not any(name.startswith("TextTools") for name in info)
        log = (root / "comfyui.log").read_text()
        assert "Skipping loading of custom nodes\n" in log
        assert "Import times" not in log and "Prestartup times" not in log


async def test_a_class_whose_info_fails_is_left_out_and_logged(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    pack = root / "custom_nodes" / "flaky"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(
        "class Flaky:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        raise KeyError('model list unavailable')\n\n"
        "NODE_CLASS_MAPPINGS = {'Flaky': Flaky}\n"
    )
    async with SandboxComfy(root) as server, aiohttp.ClientSession() as session:
        info = await Api(server, session).get("/object_info")
        raw = await Api(server, session).get("/internal/logs/raw")
    assert "Flaky" not in info and "SaveImage" in info
    text = "".join(e["m"] for e in raw["entries"])
    assert "[ERROR] An error occurred while retrieving information for the 'Flaky' node.\n" in text
    assert "KeyError: 'model list unavailable'\n" in text
    assert json.loads(json.dumps(info)) == info
