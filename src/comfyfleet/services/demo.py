"""The demo story: rent an instance, run workflows on it, show the bill, destroy, verify.

The CLI starts the cloud (the sandbox) and hands its config here, so this use-case is the same
whether the cloud is simulated or real.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from comfyfleet.control.costs import CostBreakdown
from comfyfleet.services.cloud import CloudConfig, open_cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.instances import cost_of, destroy
from comfyfleet.services.reconcile import reconcile
from comfyfleet.services.run import Progress, RunReport, RunRequest, Stage, run_workflow
from comfyfleet.services.targets import Target
from comfyfleet.services.up import UpRequest, up
from comfyfleet.state.rows import tracking_tag

TXT2IMG = "txt2img_sd15.json"  # ComfyUI's stock SD1.5 workflow, UI format as users save it
FILTERS = "image_filters.api.json"  # LoadImage -> resize -> invert -> blur -> save, API format
SETTLE_SECONDS = 600.0  # simulated seconds watched after destroy: nothing may bill


@dataclass(frozen=True)
class Bill:
    """What the demo cost: our estimate from observed states, and the account's own figure."""

    estimate: CostBreakdown
    account_before: float
    account_after: float

    @property
    def charged(self) -> float:
        return self.account_before - self.account_after


@dataclass(frozen=True)
class DemoReport:
    """Everything the demo did."""

    instance_id: int
    gpu: str
    dph_total: float
    txt2img: RunReport
    filters: RunReport
    bill: Bill
    left_billing: int  # instances still billing after the destroy (must be 0)
    idle_charge: float  # $ charged while watching after the destroy (must be 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": {"id": self.instance_id, "gpu": self.gpu, "dph_total": self.dph_total},
            "txt2img": self.txt2img.to_json(),
            "filters": self.filters.to_json(),
            "bill": {
                "estimate_usd": round(self.bill.estimate.total_usd, 6),
                "running_seconds": round(self.bill.estimate.running_seconds, 1),
                "account_charged_usd": round(self.bill.charged, 6),
            },
            "left_billing": self.left_billing,
            "idle_charge_usd": round(self.idle_charge, 6),
        }


def sample_path(name: str) -> Path:
    """Filesystem path of a bundled sample workflow."""
    path = Path(str(resources.files("comfyfleet") / "samples" / name))
    if not path.is_file():
        raise FileNotFoundError(f"bundled sample {name} is missing from the installation")
    return path


async def run_samples(
    target: Target, out_dir: Path, timeout: float, progress: Progress | None, settings: Any
) -> tuple[RunReport, RunReport]:
    """Text-to-image from a UI-format workflow, then filter its picture as an uploaded input."""
    notify = progress or (lambda _item: None)
    notify(Stage("demo", "text-to-image (ComfyUI's SD1.5 workflow, UI format)"))
    first = await run_workflow(
        RunRequest(
            workflow=sample_path(TXT2IMG),
            target=target,
            sets=["KSampler.seed=42", "6.text=a lighthouse on a cliff at dusk, oil painting"],
            out_dir=out_dir,
            timeout=timeout,
        ),
        settings,
        progress=progress,
    )
    picture = first.job_dir / first.files[0].path
    notify(Stage("demo", "image filters with an uploaded input"))
    second = await run_workflow(
        RunRequest(
            workflow=sample_path(FILTERS),
            target=target,
            inputs=[f"Photo.image={picture}"],
            out_dir=out_dir,
            timeout=timeout,
        ),
        settings,
        progress=progress,
    )
    return first, second


async def run_demo(config: CloudConfig, out_dir: Path, progress: Progress, say: Any) -> DemoReport:
    """up -> run two workflows -> bill -> destroy -> prove nothing is left billing."""
    settings = config.settings
    async with open_cloud(config) as cloud:
        before = (await cloud.vast.current_user()).credit
        # The cheapest offer that passes the ComfyUI defaults (CUDA floor of the image included).
        result = await up(cloud, UpRequest(order="dph_total"), say)
        endpoint = comfy_endpoint(cloud, result.instance)
        assert endpoint is not None
        name = result.row.display_name
        target = Target(endpoint.url, endpoint.token, name=name)
        first, second = await run_samples(target, out_dir, settings.run.timeout, progress, settings)
        say(f"destroying instance {result.instance.id}")
        row = await destroy(cloud, str(result.instance.id))
        after = (await cloud.vast.current_user()).credit
        estimate = cost_of(cloud, row)
        say(f"watching the account for {SETTLE_SECONDS:.0f} simulated seconds after destroy")
        await cloud.clock.sleep(SETTLE_SECONDS)
        await reconcile(cloud)
        ours = [i for i in await cloud.vast.list_instances() if tracking_tag(i.label)]
        settled = (await cloud.vast.current_user()).credit
    return DemoReport(
        instance_id=result.instance.id,
        gpu=f"{result.offer.num_gpus}x {result.offer.gpu_name}",
        dph_total=result.offer.dph_total,
        txt2img=first,
        filters=second,
        bill=Bill(estimate, before, after),
        left_billing=len(ours),
        idle_charge=after - settled,
    )
