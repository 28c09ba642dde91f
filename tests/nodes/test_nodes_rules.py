"""The pure parts: URL/name/ref rules, pip's formats, the guard's decisions, ComfyUI's log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyfleet.control.protected import (
    Change,
    ProtectedSet,
    changes,
    constraints,
    refusals,
    restore_plan,
)
from comfyfleet.errors import RemoteError, UnsafeSource
from comfyfleet.remote.comfylog import last_startup
from comfyfleet.remote.custom_nodes import parse_entries
from comfyfleet.remote.git import check_entry_name, check_git_url, check_ref, repo_dir_name
from comfyfleet.remote.pipreport import (
    parse_pip_list,
    parse_report,
    requirement_lines,
    requirement_name,
)
from comfyfleet.services.nodes_source import check_pack_ref, looks_like_url


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com/ltdrdata/ComfyUI-Impact-Pack", "ComfyUI-Impact-Pack"),
        ("https://github.com/ltdrdata/ComfyUI-Impact-Pack.git", "ComfyUI-Impact-Pack"),
        ("https://github.com/owner/repo/", "repo"),
        ("https://git.example.com:8443/group/sub/pack.git", "pack"),
        ("git@github.com:owner/comfy_pack.git", "comfy_pack"),
        ("ssh://git@example.com:2222/owner/pack", "pack"),
        ("file:///tmp/packs/local_pack", "local_pack"),
    ],
)
def test_accepted_repository_urls_and_their_folder(url: str, name: str) -> None:
    assert check_git_url(url) == url.rstrip("/")
    assert repo_dir_name(url) == name
    assert looks_like_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/owner/repo",  # not https
        "https://user:secret@github.com/owner/repo",
        "https://github.com/owner/repo?x=1",
        "https://github.com/owner/repo;id",
        "https://github.com/$(id)/repo",
        "https://github.com/owner/`id`",
        "https://github.com/owner/../etc",
        "https://github.com/-owner/repo",
        "file://relative/path",
        "file:///tmp/x y",
        "ext::sh -c touch% /tmp/pwned",
        "git@github.com:owner/repo;id",
        "-uhttps://github.com/owner/repo",
        "https://github.com/owner/repo\n",
    ],
)
def test_refused_repository_urls(url: str) -> None:
    with pytest.raises(UnsafeSource, match="not a usable git repository URL"):
        check_git_url(url + ("x" if url.endswith("\n") else ""))


def test_names_refs_and_pack_refs() -> None:
    for good in ("pack", "ComfyUI-KJNodes", "x.py", "old.disabled", "a_b+c"):
        assert check_entry_name(good) == good
    for bad in ("", "..", ".hidden", "a/b", "x;rm -rf /", "$(id)", "a b", "__pycache__", "-rf"):
        with pytest.raises(UnsafeSource):
            check_entry_name(bad)
    for good in ("v1.2.3", "main", "feature/x", "0123abc"):
        assert check_ref(good) == good
    for bad in ("-b", "a..b", "$(id)", "x;y", "v1 ", "a//b", "x.lock", "@{-1}"):
        with pytest.raises(UnsafeSource):
            check_ref(bad)
    assert check_pack_ref("comfyui-impact-pack") == "comfyui-impact-pack"
    assert check_pack_ref("ltdrdata/ComfyUI-Impact-Pack") == "ltdrdata/ComfyUI-Impact-Pack"
    for bad in ("x;rm -rf /", "$(id)", "a b", "`id`", "../x", "x|y"):
        with pytest.raises(UnsafeSource):
            check_pack_ref(bad)
    with pytest.raises(UnsafeSource, match="never loads"):
        repo_dir_name("https://github.com/o/pack.disabled")


def test_requirement_lines_and_names() -> None:
    text = (
        "# comment\n\nonnx>=1.17  # inline\ntorch==2.7.1 ; platform_system == 'Linux'\n"
        "opencv-python\\\n-headless\n-r extra.txt\n--extra-index-url https://x/simple\n"
        "git+https://github.com/o/r.git\n./local\nPillow[extra]>=10\n"
    )
    lines = requirement_lines(text)
    assert lines == [
        "onnx>=1.17",
        "torch==2.7.1 ; platform_system == 'Linux'",
        "opencv-python-headless",
        "-r extra.txt",
        "--extra-index-url https://x/simple",
        "git+https://github.com/o/r.git",
        "./local",
        "Pillow[extra]>=10",
    ]
    names = [requirement_name(line) for line in lines]
    assert names == ["onnx", "torch", "opencv-python-headless", None, None, None, None, "pillow"]
    assert requirement_name("Torch_Vision @ https://x/y.whl") == "torch-vision"


def _item(name: str, version: str, requested: bool, *requires: str) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "version": version}
    if requires:
        meta["requires_dist"] = list(requires)
    return {"requested": requested, "metadata": meta, "is_direct": False}


# What pip 23 reports for `ultralytics` + `xformers==0.0.33` on the image's venv.
REPORT = {
    "version": "1",
    "pip_version": "23.2.1",
    "install": [
        _item(
            "ultralytics",
            "8.3.200",
            True,
            "torch>=1.8.0",
            "torchvision>=0.9.0",
            "opencv-python>=4.6.0",
            'pytest; extra == "dev"',
        ),
        _item("xformers", "0.0.33", True, "torch==2.9.0"),
        _item(
            "torch",
            "2.9.0+cu128",
            False,
            'triton==3.5.0; platform_system == "Linux"',
        ),
        _item("triton", "3.5.0", False),
        _item("torchvision", "0.24.0+cu128", False, "torch==2.9.0"),
        _item("opencv-python", "4.12.0.88", False),
    ],
    "environment": {},
}
INSTALLED = parse_pip_list(
    json.dumps(
        [
            {"name": "torch", "version": "2.8.0+cu128"},
            {"name": "torchvision", "version": "0.23.0+cu128"},
            {"name": "xformers", "version": "0.0.32"},
            {"name": "triton", "version": "3.4.0"},
            {"name": "nvidia_cudnn_cu12", "version": "9.10.2.21"},
            {"name": "einops", "version": "0.8.1"},
        ]
    )
)


def test_the_report_is_read_and_refusals_name_the_lines_that_force_them() -> None:
    plan = parse_report(json.dumps(REPORT))
    assert [(p.key, p.requested) for p in plan][:2] == [("ultralytics", True), ("xformers", True)]
    assert 'pytest; extra == "dev"' not in plan[0].requires
    lines = ["ultralytics", "xformers==0.0.33"]
    found = {r.change.name: r for r in refusals(plan, INSTALLED, ProtectedSet(), lines)}
    assert set(found) == {"xformers", "torch", "triton", "torchvision"}
    assert found["torch"].describe() == (
        "torch 2.8.0+cu128 -> 2.9.0+cu128 (required by 'xformers==0.0.33')"
    )
    assert found["triton"].lines == ("xformers==0.0.33",)
    # torchvision moves only to match the new torch: it is blamed on what asks for it.
    assert found["torchvision"].lines == ("ultralytics",)
    with pytest.raises(RemoteError, match="installation report"):
        parse_report("not json")


def test_a_protected_package_that_is_not_installed_yet_is_refused_too() -> None:
    plan = parse_report(json.dumps({"install": [_item("nvidia-nccl-cu12", "2.27.3", False)]}))
    (refusal,) = refusals(plan, INSTALLED, ProtectedSet(), ["some-pack"])
    assert refusal.change == Change("nvidia-nccl-cu12", None, "2.27.3")
    assert refusal.describe() == (
        "nvidia-nccl-cu12 (not installed) -> 2.27.3 (required by a dependency of the requirements)"
    )


def test_protected_set_constraints_and_restore() -> None:
    protected = ProtectedSet(["onnxruntime*"])
    for name in ("Torch", "NVIDIA_CUDNN_CU12", "onnxruntime-gpu", "TorchSDE", "xformers"):
        assert name in protected
    for name in ("torchmetrics", "onnx", "einops", "nvidia"):
        assert name not in protected
    pinned = protected.pick(INSTALLED)
    assert constraints(pinned) == (
        "nvidia_cudnn_cu12==9.10.2.21\ntorch==2.8.0+cu128\ntorchvision==0.23.0+cu128\n"
        "triton==3.4.0\nxformers==0.0.32\n"
    )
    after = dict(pinned)
    after["torch"] = ("torch", "2.7.1+cu128")
    after["onnxruntime"] = ("onnxruntime", "1.22.1")
    del after["triton"]
    found = changes(pinned, after)
    assert [c.describe() for c in found] == [
        "onnxruntime (not installed) -> 1.22.1",
        "torch 2.8.0+cu128 -> 2.7.1+cu128",
        "triton 3.4.0 -> (removed)",
    ]
    restore = restore_plan(found)
    assert restore.reinstall == ("torch==2.8.0+cu128", "triton==3.4.0")
    assert restore.uninstall == ("onnxruntime",)
    assert changes(pinned, pinned) == [] and restore_plan([]).empty


_OLD_START = """\
Traceback (most recent call last):
  File "/w/ComfyUI/nodes.py", line 2131, in load_custom_node
    module_spec.loader.exec_module(module)
ImportError: old failure

Cannot import /w/ComfyUI/custom_nodes/flaky module for custom nodes: old failure

Import times for custom nodes:
   0.0 seconds (IMPORT FAILED): /w/ComfyUI/custom_nodes/flaky

Starting server
"""
_NEW_START = [
    "Skip /w/ComfyUI/custom_nodes/empty module for custom nodes due to the lack of "
    "NODE_CLASS_MAPPINGS or NODES_LIST (need one).",
    "Traceback (most recent call last):",
    '  File "/w/ComfyUI/custom_nodes/broken/__init__.py", line 1, in <module>',
    "ModuleNotFoundError: No module named 'cv2'",
    "",
    "Cannot import /w/ComfyUI/custom_nodes/broken module for custom nodes: No module named 'cv2'",
    "",
    "Import times for custom nodes:",
    "   0.0 seconds (IMPORT FAILED): /w/ComfyUI/custom_nodes/empty",
    "   0.0 seconds: /w/ComfyUI/custom_nodes/flaky",
    "   0.1 seconds (IMPORT FAILED): /w/ComfyUI/custom_nodes/broken",
    "   0.0 seconds: /w/ComfyUI/custom_nodes/single.py",
]
# The second start as a log collector keeps it: every line behind a timestamp.
LOG_TWO_STARTS = _OLD_START + "".join(f"2025-01-01 10:00:00 [comfy] {x}\n" for x in _NEW_START)


def test_the_log_report_of_the_latest_start(shared_dir: Path) -> None:
    captured = (
        shared_dir / "fixtures/comfyui/startup_and_run_log_with_custom_nodes.txt"
    ).read_text()
    report = last_startup(captured)
    assert report is not None
    broken = report.find("broken_pack")
    assert broken is not None and broken.failed
    assert broken.text == "   0.0 seconds (IMPORT FAILED): <EXTRA_BASE>/custom_nodes/broken_pack"
    why = report.failure_lines("broken_pack")
    assert why[0] == "Traceback (most recent call last):"
    assert why[-2] == "ImportError: simulated missing dependency for fixture capture"
    assert why[-1].startswith("Cannot import <EXTRA_BASE>/custom_nodes/broken_pack module")
    assert report.failure_lines("no_mappings_pack")[0].startswith("Skip <EXTRA_BASE>")
    probe = report.find("progress_probe.py")
    assert probe is not None and not probe.failed

    latest = last_startup(LOG_TWO_STARTS)
    assert latest is not None
    flaky = latest.find("flaky")
    assert flaky is not None and not flaky.failed
    assert latest.failure_lines("flaky") == [], "the old start's failure is not this one's"
    why = latest.failure_lines("broken")
    assert why[0].endswith("Traceback (most recent call last):")
    assert why[-2].endswith("ModuleNotFoundError: No module named 'cv2'")
    assert why[-1].endswith("module for custom nodes: No module named 'cv2'")
    assert latest.find("single.py") is not None
    assert last_startup("no report here\n") is None


def test_custom_nodes_listing_records() -> None:
    out = (
        "entry=pack\0kind=dir\0requirements=yes\0commit=abc\0url=file:///r/pack\0dirty=no\0"
        "entry=linked\0link=/elsewhere\0kind=dir\0"
        "entry=Note.py\0kind=file\0"
        "entry=old.disabled\0kind=dir\0"
        "entry=readme.txt\0kind=file\0"
    )
    entries = {e.name: e for e in parse_entries(out) or []}
    assert entries["pack"].dirty is False and entries["pack"].has_requirements
    assert entries["pack"].module == "custom_nodes.pack"
    assert entries["Note.py"].module == "custom_nodes.Note" and entries["Note.py"].loadable
    assert entries["linked"].link == "/elsewhere" and entries["linked"].dirty is None
    assert entries["old.disabled"].disabled and not entries["old.disabled"].loadable
    assert not entries["readme.txt"].loadable
    assert next(e.name for e in parse_entries(out) or []) == "linked"
    assert parse_entries("missing=yes\0") is None
