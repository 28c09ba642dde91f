"""Versions and requirements as the doctor compares them (PEP 440 in the parts that matter)."""

from __future__ import annotations

import pytest

from comfyfleet.control.versions import (
    compare,
    normalize_name,
    parse_requirement,
    release,
    spec_allows,
)


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [
        ("2.8.0+cu128", "2.8.0", 0),
        ("2.8.0", "2.8", 0),
        ("2.9.0", "2.8.1", 1),
        ("0.0.33", "0.0.32", 1),
        ("2.9.0.dev20250101", "2.9.0", -1),
        ("2.9.0rc1", "2.9.0", -1),
        ("2.9.0a1", "2.9.0b1", -1),
        ("1.0.post1", "1.0", 1),
        ("1.27.10", "1.27.9", 1),
        ("12.8", "12.10", -1),
    ],
)
def test_compare(left: str, right: str, order: int) -> None:
    assert compare(left, right) == order
    assert compare(right, left) == -order


@pytest.mark.parametrize(
    ("op", "wanted", "version", "allowed"),
    [
        ("==", "2.8.0", "2.8.0+cu128", True),  # a local version matches a plain pin
        ("==", "2.8.0+cu128", "2.8.0+cpu", False),
        ("==", "2.9.0", "2.8.0+cu128", False),
        ("!=", "2.8.0", "2.8.0+cu128", False),
        (">=", "1.6.0", "2.8.0+cu128", True),
        ("<", "2.8", "2.8.0", False),
        ("<=", "2.8", "2.8.0+cu128", True),
        (">", "2.8", "2.8.1", True),
        ("~=", "2.2", "2.9", True),
        ("~=", "2.2", "3.0", False),
        ("~=", "2.2.1", "2.3", False),
        ("==", "2.8.*", "2.8.1+cu128", True),
        ("!=", "2.8.*", "2.9.0", True),
        ("===", "2.8.0", "2.8.0", True),
    ],
)
def test_specifiers(op: str, wanted: str, version: str, allowed: bool) -> None:
    assert spec_allows(op, wanted, version) is allowed


def test_requirements_as_they_apply_on_linux() -> None:
    xformers = parse_requirement('torch==2.9.0; platform_system == "Linux"')
    assert xformers is not None and xformers.name == "torch"
    assert not xformers.allows("2.8.0+cu128") and xformers.allows("2.9.0+cu128")
    ranged = parse_requirement("NumPy (>=1.2,<2)")
    assert ranged is not None and ranged.name == "numpy" and ranged.allows("1.26.4")
    assert not ranged.allows("2.0.0")
    extras = parse_requirement("Torch[opt]>=2")
    assert extras is not None and extras.name == "torch" and extras.specs == ((">=", "2"),)
    assert parse_requirement('pytest; extra == "test"') is None
    assert parse_requirement('pywin32; sys_platform == "win32"') is None
    assert parse_requirement("not a requirement !!") is None
    assert normalize_name("Nvidia_CUBLAS.cu12") == "nvidia-cublas-cu12"
    assert release("v1.2.3rc1") == (1, 2, 3)
