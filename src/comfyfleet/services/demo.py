"""The demo story: run the bundled sample workflows against a ComfyUI server.

The CLI starts the server (the sandbox) and hands its URL here, so this use-case is the same
whether the server is simulated or real.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from comfyfleet.config import Settings
from comfyfleet.services.run import Progress, RunReport, RunRequest, Stage, run_workflow
from comfyfleet.services.targets import Target

TXT2IMG = "txt2img_sd15.json"  # ComfyUI's stock SD1.5 workflow, UI format as users save it
FILTERS = "image_filters.api.json"  # LoadImage -> resize -> invert -> blur -> save, API format


@dataclass(frozen=True)
class DemoReport:
    """Both runs of the demo."""

    txt2img: RunReport
    filters: RunReport

    def to_json(self) -> dict[str, object]:
        return {"txt2img": self.txt2img.to_json(), "filters": self.filters.to_json()}


def sample_path(name: str) -> Path:
    """Filesystem path of a bundled sample workflow."""
    path = Path(str(resources.files("comfyfleet") / "samples" / name))
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample {name} is missing from the installation")
    return path


async def run_demo(
    target: Target, settings: Settings, out_dir: Path, progress: Progress | None = None
) -> DemoReport:
    """Text-to-image from a UI-format workflow, then filter its picture as an uploaded input."""
    notify = progress or (lambda _item: None)
    notify(Stage("demo", "1/2 text-to-image (SD1.5 workflow in UI format)"))
    first = await run_workflow(
        RunRequest(
            workflow=sample_path(TXT2IMG),
            target=target,
            sets=["KSampler.seed=42", "6.text=a lighthouse on a cliff at dusk, oil painting"],
            out_dir=out_dir,
            timeout=settings.run.timeout,
        ),
        settings,
        progress=progress,
    )
    picture = first.job_dir / first.files[0].path
    notify(Stage("demo", "2/2 image filters with an uploaded input"))
    second = await run_workflow(
        RunRequest(
            workflow=sample_path(FILTERS),
            target=target,
            inputs=[f"Photo.image={picture}"],
            out_dir=out_dir,
            timeout=settings.run.timeout,
        ),
        settings,
        progress=progress,
    )
    return DemoReport(first, second)
