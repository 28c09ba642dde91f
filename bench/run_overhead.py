"""Per-prompt overhead of `comfyfleet run`'s client path against a minimal raw client.

Both do the same observable work on the same sandbox ComfyUI, interleaved: submit the prompt,
follow the WebSocket until the prompt is done, download every output. The raw client is what
ComfyUI's own API example does (websocket + urllib); comfyfleet's path is `run_workflow`
(convert, validate, upload, submit, watch, download with sha256, write the manifest).

    python bench/run_overhead.py [--runs 20] [--speed 1.0]

Prints the median seconds of each and the ratio comfyfleet / raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from comfyfleet.config import load_settings
from comfyfleet.sandbox.comfy.server import SandboxComfy
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


async def comfyfleet_client(url: str, workflow: Path, out: Path) -> None:
    settings = load_settings(env={})
    await run_workflow(RunRequest(workflow=workflow, target=Target(url), out_dir=out), settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        wf = base / "wf.json"
        wf.write_text(json.dumps(WORKFLOW))
        handle = SandboxComfy(root=base / "root", speed=args.speed).start_in_thread()
        try:
            raw_times: list[float] = []
            ours: list[float] = []
            (base / "raw").mkdir()
            (base / "ours").mkdir()
            # warm both paths once (imports, object_info cache, first connection)
            raw_client(handle.url, WORKFLOW, base / "raw")
            asyncio.run(comfyfleet_client(handle.url, wf, base / "ours"))
            for _ in range(args.runs):
                t0 = time.perf_counter()
                raw_client(handle.url, WORKFLOW, base / "raw")
                raw_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                asyncio.run(comfyfleet_client(handle.url, wf, base / "ours"))
                ours.append(time.perf_counter() - t0)
        finally:
            handle.stop()
    raw_med, ours_med = statistics.median(raw_times), statistics.median(ours)
    print(f"runs per client:         {args.runs} (sandbox speed {args.speed})")
    print(f"raw client (median):     {raw_med * 1000:8.1f} ms")
    print(f"comfyfleet run (median): {ours_med * 1000:8.1f} ms")
    print(f"ratio comfyfleet/raw:    {ours_med / raw_med:8.3f}x")


if __name__ == "__main__":
    main()
