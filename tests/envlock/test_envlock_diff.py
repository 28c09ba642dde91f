"""`control.envlock_diff` and `control.envlock_format`: differences and actions (tables), and
the lock file read back, checked."""

from __future__ import annotations

import dataclasses
import json

import pytest

from comfyfleet.control.envlock_diff import diff, parse_freeze, pip_differences
from comfyfleet.control.envlock_format import (
    ComfyState,
    EnvLock,
    ModelState,
    PackState,
    parse_lock,
)
from comfyfleet.control.protected import ProtectedSet
from comfyfleet.errors import UsageError

URL = "https://github.com/o/pack"
C1, C2 = "1" * 40, "2" * 40
SHA1, SHA2 = "a" * 64, "b" * 64
PROTECTED = ProtectedSet()


def actions(lock: EnvLock, found: EnvLock) -> list[tuple[str, str, str, str, str]]:
    return [(d.item, d.locked, d.found, d.action, d.section) for d in diff(lock, found, PROTECTED)]


@pytest.mark.parametrize(
    ("locked", "found", "action"),
    [
        (PackState("pack", url=URL, commit=C1), PackState("pack", url=URL, commit=C1), None),
        (
            PackState("pack", url=URL, commit=C1),
            PackState("pack", url=URL + ".git", commit=C1),
            None,
        ),
        (PackState("pack", url=URL, commit=C1), None, "install-pack"),
        (
            PackState("pack", url=URL, commit=C1),
            PackState("pack", url=URL, commit=C2),
            "install-pack",
        ),
        (
            PackState("pack.disabled", url=URL, commit=C1),
            PackState("pack", url=URL, commit=C1),
            "disable-pack",
        ),
        (
            PackState("pack", url=URL, commit=C1),
            PackState("pack.disabled", url=URL, commit=C1),
            "enable-pack",
        ),
        (
            PackState("pack", url=URL, commit=C1),
            PackState("pack", url="https://github.com/x/pack", commit=C1),
            "report",
        ),
        (PackState("pack", url=URL, commit=C1), PackState("pack", "dir"), "report"),
        (PackState("notes.py", "file"), None, "report"),
        (PackState("notes.py", "file"), PackState("notes.py", "file"), None),
    ],
)
def test_custom_nodes(locked: PackState, found: PackState | None, action: str | None) -> None:
    got = actions(EnvLock(custom_nodes=(locked,)), EnvLock(custom_nodes=(found,) if found else ()))
    assert [a[3] for a in got] == ([action] if action else [])


def test_packs_only_on_the_target_are_reported_and_left() -> None:
    found = EnvLock(custom_nodes=(PackState("extra", url=URL, commit=C1),))
    assert actions(EnvLock(), found) == [
        ("custom_nodes/extra", "-", C1[:12], "report", "custom_nodes")
    ]


@pytest.mark.parametrize(
    ("locked", "found", "expected"),
    [
        (["onnx==1.19.0"], ["onnx==1.19.0"], []),
        (["onnx==1.19.0"], [], [("pip/onnx", "pip-install")]),
        (["onnx==1.19.0"], ["ONNX==1.18.0"], [("pip/onnx", "pip-install")]),
        (["a[x]==1.0"], [], [("pip/a", "pip-install")]),
        ([], ["onnx==1.19.0"], [("pip/onnx", "report")]),
        (["torch==2.9.0+cu128"], ["torch==2.8.0+cu128"], []),  # protected: never pip's business
        (["nvidia-cudnn-cu12==9"], [], []),
        (["x @ https://h/x.whl"], [], [("pip/x", "report")]),
        (["-e /srv/y"], [], [("pip/-e /srv/y", "report")]),
        (["onnx==1.19.0; rm -rf /"], [], [("pip/onnx==1.19.0; rm -rf /", "report")]),
    ],
)
def test_pip(locked: list[str], found: list[str], expected: list[tuple[str, str]]) -> None:
    got = pip_differences(locked, found, PROTECTED)
    assert [(d.item, d.action) for d in got] == expected
    assert all(d.pin is None or d.pin == d.locked for d in got)


def test_freeze_lines() -> None:
    parsed = parse_freeze(["# comment", "", "Foo_Bar==1.0", "baz @ file:///w/baz.whl", "-e /x"])
    assert {k: (v.version, v.pin) for k, v in parsed.items()} == {
        "foo-bar": ("1.0", True),
        "baz": (None, False),
        "-e /x": (None, False),
    }


def model(path: str, sha: str | None, source: str | None = "hf://o/r/x.safetensors") -> ModelState:
    return ModelState(path, path.split("/")[0], 10, sha, source)


@pytest.mark.parametrize(
    ("locked", "found", "action"),
    [
        (model("loras/x.safetensors", SHA1), model("loras/x.safetensors", SHA1, None), None),
        (model("loras/x.safetensors", SHA1), None, "pull"),
        (model("loras/x.safetensors", SHA1), model("loras/x.safetensors", SHA2), "report"),
        (model("loras/x.safetensors", SHA1, None), None, "report"),
        (model("loras/x.safetensors", None), None, "report"),
    ],
)
def test_models(locked: ModelState, found: ModelState | None, action: str | None) -> None:
    got = actions(EnvLock(models=(locked,)), EnvLock(models=(found,) if found else ()))
    assert [a[3] for a in got] == ([action] if action else [])


@pytest.mark.parametrize(
    ("locked", "found", "rows"),
    [
        (ComfyState(commit=C1), ComfyState(commit=C1), []),
        (ComfyState(commit=C1), ComfyState(commit=C2), [("ComfyUI", C1, C2)]),
        (
            ComfyState(commit=C1),
            ComfyState(version="0.3.64"),
            [("ComfyUI", C1, "version 0.3.64 (not a git checkout)")],
        ),
        (
            ComfyState(version="0.3.60"),
            ComfyState(version="0.3.64"),
            [("ComfyUI", "0.3.60", "0.3.64")],
        ),
        (
            ComfyState(version="0.3.64", python="3.11.7"),
            ComfyState(version="0.3.64", python="3.12.1"),
            [("Python", "3.11.7", "3.12.1")],
        ),
    ],
)
def test_comfyui_is_reported_never_changed(
    locked: ComfyState, found: ComfyState, rows: list[tuple[str, str, str]]
) -> None:
    got = diff(EnvLock(comfyui=locked), EnvLock(comfyui=found), PROTECTED)
    assert [d.row for d in got] == rows and {d.action for d in got} <= {"report"}


def test_protected_differences_are_reported_never_changed() -> None:
    lock = EnvLock(protected={"torch": "2.9.0+cu128", "xformers": "0.0.33"})
    found = EnvLock(protected={"torch": "2.8.0+cu128", "xformers": "0.0.33", "Triton": "3.4.0"})
    got = diff(lock, found, PROTECTED)
    assert [(d.row, d.action) for d in got] == [
        (("protected/torch", "2.9.0+cu128", "2.8.0+cu128"), "report"),
        (("protected/Triton", "-", "3.4.0"), "report"),
    ]


# --- the file ------------------------------------------------------------------------------

FULL = EnvLock(
    comfyui=ComfyState(C1, "https://github.com/comfyanonymous/ComfyUI", "0.3.64", "3.11.7"),
    custom_nodes=(
        PackState("pack", "dir", URL, C1, False),
        PackState("old.disabled", "dir", URL + "2", C2, True),
        PackState("single.py", "file"),
    ),
    protected={"torch": "2.8.0+cu128"},
    pip=("onnx==1.19.0", "-e /srv/x"),
    models=(
        model("loras/x.safetensors", SHA1),
        dataclasses.replace(model("checkpoints/y.safetensors", SHA2, None), hashed="instance"),
    ),
    instance={"name": "studio", "vast_id": 1, "gpu": "RTX 4090"},
    created_at="2025-06-01T12:00:00Z",
    notes=("a note",),
)


def test_a_lock_reads_back_as_written() -> None:
    text = FULL.dumps()
    assert json.loads(text)["format"] == "comfyfleet-env-lock" and json.loads(text)["version"] == 1
    assert parse_lock(text, "f.json") == FULL


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "not a comfyfleet environment lock"),
        (lambda d: d.update(version=2), "format version 2"),
        (lambda d: d["custom_nodes"][0].update(url="https://h/o/r;id"), r"custom_nodes\[0\]\.url"),
        (lambda d: d["custom_nodes"][0].update(commit="HEAD~1"), r"custom_nodes\[0\]\.commit"),
        (lambda d: d["custom_nodes"][0].update(name="../escape"), r"custom_nodes\[0\]\.name"),
        (lambda d: d["models"][0].update(path="../../etc/passwd"), r"models\[0\]\.path"),
        (lambda d: d["models"][0].update(path="noslash"), "FOLDER/NAME"),
        (lambda d: d["models"][0].update(sha256="zz"), r"models\[0\]\.sha256"),
        (lambda d: d["models"][0].update(size="big"), "wrong type"),
        (lambda d: d.update(pip="onnx"), "pip is not a list"),
        (lambda d: d.update(protected={"torch": 2}), "version strings"),
    ],
)
def test_a_bad_lock_is_refused_naming_the_value(change: object, message: str) -> None:
    data = json.loads(FULL.dumps())
    change(data)  # type: ignore[operator]
    with pytest.raises(UsageError, match=message) as caught:
        parse_lock(json.dumps(data), "bad.json")
    assert "bad.json" in caught.value.message and caught.value.hint
