"""Server-given names can never escape the output folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from comfyfleet.util.paths import UnsafePath, contained, safe_relative, unique_path


@pytest.mark.parametrize(
    "parts",
    [
        ("..", "x.png"),
        ("", "../x.png"),
        ("a/../../b", "x.png"),
        ("/etc", "passwd"),
        ("", "/etc/passwd"),
        ("C:", "x.png"),
        ("", "a\\..\\x.png"),
        ("", "x\x00.png"),
        ("", "NUL.png"),
        ("", ""),
        ("", "x.png "),
    ],
)
def test_unsafe_names_are_refused(parts: tuple[str, str]) -> None:
    with pytest.raises(UnsafePath):
        safe_relative(*parts)


def test_plain_names_and_subfolders_are_kept() -> None:
    assert safe_relative("", "ComfyUI_00001_.png") == PurePosixPath("ComfyUI_00001_.png")
    assert safe_relative("a/b", "x (1).png") == PurePosixPath("a/b/x (1).png")
    assert safe_relative("temp", "", "x.png") == PurePosixPath("temp/x.png")


def test_contained_refuses_symlink_escape(tmp_path: Path) -> None:
    base = tmp_path / "out"
    base.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (base / "link").symlink_to(outside)
    with pytest.raises(UnsafePath):
        contained(base, PurePosixPath("link/x.png"))
    assert contained(base, PurePosixPath("sub/x.png")) == (base / "sub" / "x.png").resolve()


def test_unique_path_numbers_collisions(tmp_path: Path) -> None:
    first = tmp_path / "x.png"
    assert unique_path(first) == first
    first.write_bytes(b"1")
    second = unique_path(first)
    assert second.name == "x (1).png"
    second.write_bytes(b"2")
    assert unique_path(first).name == "x (2).png"
