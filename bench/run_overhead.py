"""Per-prompt overhead of `comfyfleet run`'s client path against a minimal raw client.

Both do the same observable work on the same sandbox ComfyUI, interleaved: submit the prompt,
follow the WebSocket until the prompt is done, download every output. The raw client is what
ComfyUI's own API example does (websocket + urllib); comfyfleet's path is `run_workflow`
(convert, validate, upload, submit, watch, download with sha256, write the manifest).

    python bench/run_overhead.py [--runs 20] [--speed 10]

Two workflows: a tiny one (overhead dominates) and ComfyUI's stock SD1.5 workflow (a
typical short job). Prints medians, the overhead per prompt and the ratio comfyfleet / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from comfyfleet.config import load_settings
from comfyfleet.services.run import RunRequest, run_workflow
from comfyfleet.services.targets import Target

WORKFLOW: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 3368601},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 4, "sigma": 1.0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "bench/b"}},
}


def raw_client(url: str, prompt: dict[str, Any], out: Path) -> None:
    """ComfyUI's websocket API example, with downloads written to disk."""
    client_id = uuid.uuid4().hex
    host = urllib.parse.urlsplit(url).netloc
    with connect(f"ws://{host}/ws?clientId={client_id}") as ws:
        body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
        req = urllib.request.Request(f"{url}/prompt", data=body)
        prompt_id = json.loads(urllib.request.urlopen(req).read())["prompt_id"]
        while True:
            msg = ws.recv()
            if isinstance(msg, str):
                data = json.loads(msg)
                if data["type"] == "executing":
                    d = data["data"]
                    if d["node"] is None and d["prompt_id"] == prompt_id:
                        break
    with urllib.request.urlopen(f"{url}/history/{prompt_id}") as resp:
        history = json.loads(resp.read())[prompt_id]
    for node_output in history["outputs"].values():
        for image in node_output.get("images", []):
            query = urllib.parse.urlencode(image)
            with urllib.request.urlopen(f"{url}/view?{query}") as resp:
                (out / f"{prompt_id}_{image['filename']}").write_bytes(resp.read())


async def comfyfleet_client(url: str, workflow: Path, out: Path, sets: list[str]) -> None:
    settings = load_settings(env={})
    request = RunRequest(workflow=workflow, target=Target(url), out_dir=out, sets=sets)
    await run_workflow(request, settings)


def varied(prompt: dict[str, Any], node: str, name: str, value: int) -> dict[str, Any]:
    """`prompt` with one input changed, so the server cannot answer from its cache."""
    copy = json.loads(json.dumps(prompt))
    copy[node]["inputs"][name] = value
    return copy


def start_server(root: Path, speed: float) -> tuple[subprocess.Popen[bytes], str]:
    """The sandbox ComfyUI in its own process, as a real server would be."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "comfyfleet.sandbox.comfy", "--root", str(root)]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--speed", str(speed)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/system_stats", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the sandbox ComfyUI did not start")


def measure(
    url: str, prompt: dict[str, Any], vary: tuple[str, str], runs: int, base: Path
) -> tuple[float, float]:
    """Median seconds per prompt of the raw client and of comfyfleet, interleaved.

    Every prompt differs in `vary` (node, input), so none is served from ComfyUI's cache.
    """
    node, name = vary
    base.mkdir(parents=True, exist_ok=True)
    wf = base / "wf.json"
    wf.write_text(json.dumps(prompt))
    for sub in ("raw", "ours"):
        (base / sub).mkdir(exist_ok=True)
    raw_times: list[float] = []
    ours: list[float] = []
    for i in range(runs + 1):  # the first round warms both paths and is not counted
        t0 = time.perf_counter()
        raw_client(url, varied(prompt, node, name, 2 * i), base / "raw")
        raw_t = time.perf_counter() - t0
        t0 = time.perf_counter()
        sets = [f"{node}.{name}={2 * i + 1}"]
        asyncio.run(comfyfleet_client(url, wf, base / "ours", sets))
        if i:
            raw_times.append(raw_t)
            ours.append(time.perf_counter() - t0)
    return statistics.median(raw_times), statistics.median(ours)


def typical_prompt() -> dict[str, Any]:
    """ComfyUI's stock SD1.5 text-to-image in API format (20 sampler steps)."""
    from comfyfleet.comfy.workflow.convert import ui_to_api
    from comfyfleet.models.nodes import NodeCatalog
    from comfyfleet.services.demo import TXT2IMG, sample_path

    info = json.loads(urllib.request.urlopen(SERVER_URL + "/object_info").read())
    ui = json.loads(sample_path(TXT2IMG).read_text())
    return ui_to_api(ui, NodeCatalog(info))


SERVER_URL = ""


def main() -> None:
    global SERVER_URL
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--speed", type=float, default=10.0, help="sandbox clock speed")
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server, SERVER_URL = start_server(base / "root", args.speed)
        try:
            tiny = measure(SERVER_URL, WORKFLOW, ("1", "color"), args.runs, base / "tiny")
            rows.append(("tiny (4 image nodes)", *tiny))
            sd15 = typical_prompt()
            runs = max(3, args.runs // 4)
            typical = measure(SERVER_URL, sd15, ("3", "seed"), runs, base / "sd15")
            rows.append(("SD1.5 txt2img, 20 steps", *typical))
        finally:
            server.terminate()
            server.wait(10)
    print(f"sandbox ComfyUI in its own process, clock speed {args.speed}x; medians per prompt")
    print(f"{'workflow':26} {'raw client':>12} {'comfyfleet':>12} {'overhead':>10} {'ratio':>7}")
    for name, raw, ours in rows:
        print(
            f"{name:26} {raw * 1000:10.1f}ms {ours * 1000:10.1f}ms "
            f"{(ours - raw) * 1000:8.1f}ms {ours / raw:6.3f}x"
        )


if __name__ == "__main__":
    main()
