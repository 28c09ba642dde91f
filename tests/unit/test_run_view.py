"""The live progress view: node names, step k/n, previews counted."""

from __future__ import annotations

import io

from rich.console import Console

from comfyfleet.cli.render import RunView
from comfyfleet.models import events as ev
from comfyfleet.services.run import Stage


def _view(terminal: bool) -> tuple[RunView, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=120, color_system=None)
    return RunView(console=console), buf


def test_progress_shows_node_step_and_previews() -> None:
    view, buf = _view(terminal=True)
    with view:
        view.update(Stage("submitting", "p1", {"3": "Sampler (KSampler)"}))
        view.update(ev.Executing(node="3", display_node="3", prompt_id="p1"))
        view.update(ev.PreviewImage(format="jpeg", mime="image/jpeg", data=b"x", metadata=None))
        view.update(ev.Progress(value=7, max=20, node="3", prompt_id="p1"))
        assert view._progress is not None
        view._progress.refresh()
    text = buf.getvalue()
    assert "running Sampler (KSampler)" in text
    assert "7/20" in text
    assert "previews 1" in text


def test_plain_lines_when_not_a_terminal() -> None:
    view, buf = _view(terminal=False)
    with view:
        view.update(Stage("submitting", "p1", {"3": "KSampler"}))
        view.update(ev.Executing(node="3", display_node="3", prompt_id="p1"))
    assert buf.getvalue().splitlines() == ["submitting p1", "running KSampler"]


def test_disabled_view_prints_nothing() -> None:
    buf = io.StringIO()
    view = RunView(enabled=False, console=Console(file=buf))
    with view:
        view.update(Stage("submitting", "p1"))
    assert buf.getvalue() == ""
