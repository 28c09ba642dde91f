"""`comfyfleet run` end to end: the installed command against a sandbox ComfyUI on loopback."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyfleet.services.demo import FILTERS, TXT2IMG, sample_path


def _manifest(out: Path) -> tuple[Path, dict[str, Any]]:
    manifests = list(out.glob("*/manifest.json"))
    assert len(manifests) == 1, manifests
    return manifests[0].parent, json.loads(manifests[0].read_text())


def test_run_ui_workflow_downloads_verified_outputs(
    cli: Any, comfy_sandbox_thread: Any, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    result = cli(
        "run",
        str(sample_path(TXT2IMG)),
        "--target",
        comfy_sandbox_thread.url,
        "--set",
        "KSampler.seed=7",
        "--set",
        "EmptyLatentImage.width=256",
        "--out",
        str(out),
        "--json",
    )
    assert result.code == 0, result.stderr
    report = result.json()
    job_dir, manifest = _manifest(out)
    assert report["job_id"] == manifest["job_id"] == job_dir.name
    assert manifest["prompt_id"] == report["prompt_id"]
    assert manifest["workflow"]["format"] == "ui"
    assert len(manifest["workflow"]["prompt_sha256"]) == 64
    assert manifest["parameters"]["set"] == ["KSampler.seed=7", "EmptyLatentImage.width=256"]
    assert manifest["files"], "the SaveImage output must be downloaded"
    for f in manifest["files"]:
        data = (job_dir / f["path"]).read_bytes()
        assert len(data) == f["size"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    saved = [f for f in manifest["files"] if f["type"] == "output"]
    with Image.open(job_dir / saved[0]["path"]) as img:
        assert img.size[0] == 256
    timings = manifest["timings"]
    assert timings["3"]["class_type"] == "KSampler" and timings["3"]["seconds"] > 0


def test_run_uploads_inputs(cli: Any, comfy_sandbox_thread: Any, tmp_path: Path) -> None:
    picture = tmp_path / "in.png"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(picture)
    out = tmp_path / "results"
    result = cli(
        "run",
        str(sample_path(FILTERS)),
        "--target",
        comfy_sandbox_thread.url,
        "--input",
        f"Photo.image={picture}",
        "--set",
        "Resize.width=32",
        "--set",
        "Resize.height=32",
        "--out",
        str(out),
    )
    assert result.code == 0, result.stderr
    job_dir, manifest = _manifest(out)
    (file,) = manifest["files"]
    with Image.open(job_dir / file["path"]) as img:
        assert img.size == (32, 32)
        r, g, _ = img.convert("RGB").getpixel((16, 16))
        assert r < 100 and g > 150  # red inverted to cyan


def test_invalid_override_is_caught_before_submitting(
    cli: Any, comfy_sandbox_thread: Any, tmp_path: Path
) -> None:
    result = cli(
        "run",
        str(sample_path(TXT2IMG)),
        "--target",
        comfy_sandbox_thread.url,
        "--set",
        "KSampler.steps=0",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.code == 3
    assert "steps" in result.stderr and "smaller than min" in result.stderr
    assert not (tmp_path / "o").exists()


def test_unknown_node_lists_candidates(cli: Any, comfy_sandbox_thread: Any, tmp_path: Path) -> None:
    result = cli(
        "run",
        str(sample_path(TXT2IMG)),
        "--target",
        comfy_sandbox_thread.url,
        "--set",
        "CLIPTextEncode.text=x",
    )
    assert result.code == 2
    assert "6" in result.stderr and "7" in result.stderr  # both CLIPTextEncode nodes offered


def test_execution_error_names_node_and_exception(
    cli: Any, comfy_sandbox_thread: Any, tmp_path: Path
) -> None:
    comfy_sandbox_thread.knobs.crash("KSampler", "torch.OutOfMemoryError", "CUDA out of memory")
    result = cli("run", str(sample_path(TXT2IMG)), "--target", comfy_sandbox_thread.url)
    assert result.code == 4
    assert "node 3 (KSampler)" in result.stderr
    assert "torch.OutOfMemoryError" in result.stderr and "CUDA out of memory" in result.stderr


def test_timeout_interrupts_the_remote_prompt(
    cli: Any, comfy_sandbox_thread: Any, tmp_path: Path
) -> None:
    comfy_sandbox_thread.knobs.slow("KSampler", 600.0)
    result = cli(
        "run",
        str(sample_path(TXT2IMG)),
        "--target",
        comfy_sandbox_thread.url,
        "--timeout",
        "2",
    )
    assert result.code == 6, result.stderr
    _wait_queue_empty(comfy_sandbox_thread.url)


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],  # Ctrl+C; kill, timeout(1), systemd
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_interrupts_the_remote_prompt(
    comfy_sandbox_thread: Any, tmp_path: Path, signum: int, code: int
) -> None:
    import shutil

    comfy_sandbox_thread.knobs.slow("KSampler", 600.0)
    exe = shutil.which("comfyfleet")
    assert exe
    proc = subprocess.Popen(
        [exe, "run", str(sample_path(TXT2IMG)), "--target", comfy_sandbox_thread.url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_running(comfy_sandbox_thread.url)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    _wait_queue_empty(comfy_sandbox_thread.url)


def _queue(url: str) -> dict[str, Any]:
    import httpx

    data: dict[str, Any] = httpx.get(url + "/queue", timeout=10).json()
    return data


def _wait_running(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _queue(url)["queue_running"]:
            return
        time.sleep(0.05)
    raise AssertionError("the prompt never started")


def _wait_queue_empty(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        q = _queue(url)
        if not q["queue_running"] and not q["queue_pending"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the remote prompt is still queued or running: {_queue(url)}")


def test_unreachable_server(cli: Any) -> None:
    result = cli("run", str(sample_path(TXT2IMG)), "--target", "http://127.0.0.1:9")
    assert result.code == 7
    assert "127.0.0.1:9" in result.stderr


def test_a_missing_or_broken_workflow_fails_before_connecting(cli: Any, tmp_path: Path) -> None:
    # Port 9 answers nothing: reaching the server would fail with 7, not these.
    missing = cli("run", str(tmp_path / "absent.json"), "--target", "http://127.0.0.1:9")
    assert missing.code == 2
    assert "absent.json: no such file" in missing.stderr and "127.0.0.1:9" not in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": [')
    result = cli("run", str(broken), "--target", "http://127.0.0.1:9")
    assert result.code == 3
    assert "broken.json: not JSON" in result.stderr and "127.0.0.1:9" not in result.stderr


def test_bad_target(cli: Any) -> None:
    result = cli("run", str(sample_path(TXT2IMG)), "--target", "ftp://my-box")
    assert result.code == 2
    assert "not a ComfyUI URL" in result.stderr


def test_instance_target_without_a_vast_key_says_how_to_get_one(cli: Any) -> None:
    result = cli("run", str(sample_path(TXT2IMG)), "--target", "my-box")
    assert result.code == 2
    assert "no Vast API key" in result.stderr
    assert "comfyfleet login" in result.stderr and "--profile sandbox" in result.stderr


def test_demo(cli: Any, tmp_path: Path) -> None:
    result = cli("demo", "--speed", "50", "--out", str(tmp_path / "demo"), "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    for part in ("txt2img", "filters"):
        manifest = Path(data[part]["manifest"])
        assert manifest.is_file()
        assert json.loads(manifest.read_text())["files"]


def test_hostile_output_names_cannot_escape_the_output_folder(
    cli: Any, comfy_sandbox_thread: Any, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    victim = tmp_path / "passwd"
    victim.write_text("untouched")

    def run_filters() -> Any:
        target = comfy_sandbox_thread.url
        picture = f"Photo.image={_picture(tmp_path)}"
        return cli(
            "run",
            str(sample_path(FILTERS)),
            "--target",
            target,
            "--input",
            picture,
            "--out",
            str(out),
        )

    comfy_sandbox_thread.knobs.forge_output_names("../..", "passwd")
    result = run_filters()
    assert result.code != 0
    assert "passwd" in result.stderr and "refusing" in result.stderr
    assert victim.read_text() == "untouched"
    assert not list(tmp_path.glob("**/passwd*.part"))
    comfy_sandbox_thread.knobs.forge_output_names("", "..")
    again = run_filters()
    assert again.code != 0 and "refusing" in again.stderr


def _picture(tmp_path: Path) -> Path:
    picture = tmp_path / "in.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(picture)
    return picture
