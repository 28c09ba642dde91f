"""`comfyfleet up`: rent the best matching offer and wait until ComfyUI really answers.

Never leaks an instance: the intent is recorded before each create; a create that fails but
left a contract is destroyed; an instance that misses the readiness deadline is destroyed
before the next offer is tried; and a create whose cleanup failed is never retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from comfyfleet.errors import OfferUnavailable, UsageError, VastCreateFailed, VastError
from comfyfleet.models.vast import Instance, Offer
from comfyfleet.services.cloud import Cloud
from comfyfleet.services.endpoints import comfy_endpoint
from comfyfleet.services.readiness import NotReady, wait_ready
from comfyfleet.services.reconcile import Action, owner_fields, reconcile
from comfyfleet.services.remote_ops import ensure_account_key
from comfyfleet.services.secrets import web_token
from comfyfleet.state import MANUAL_POOL, InstanceRow, Intent
from comfyfleet.state.rows import tracking_tag, vast_label
from comfyfleet.vast.search import (
    NO_MATCH_HINT,
    OfferDefaults,
    comfy_offer_query,
    describe_filters,
)

# Ports Vast's ComfyUI template opens: portal, Jupyter, ComfyUI (proxy), API wrapper.
TEMPLATE_PORTS = (1111, 8080, 8188, 8288)
PORTAL_CONFIG = (
    "localhost:1111:11111:/:Instance Portal|localhost:8188:18188:/:ComfyUI|"
    "localhost:8288:18288:/docs:API Wrapper|localhost:8080:18080:/:Jupyter"
)
RUNTYPE = "jupyter_direc ssh_direc ssh_proxy"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UpRequest:
    """What to rent."""

    query: Sequence[str] = ()
    gpu: str | None = None
    max_dph: float | None = None
    image: str | None = None
    disk_gb: float | None = None
    name: str | None = None
    order: str | None = None


@dataclass(frozen=True)
class UpResult:
    """A ready instance and what it took."""

    row: InstanceRow
    instance: Instance
    offer: Offer
    url: str  # the ComfyUI proxy URL (the token is not part of it)
    attempts: int
    reconciled: list[Action]


def offer_query(cloud: Cloud, request: UpRequest, *, limit: int | None = None) -> dict[str, object]:
    """The wire query for `request` over the ComfyUI defaults and the settings."""
    terms = list(request.query)
    if request.gpu:
        terms.append(f"gpu_name={request.gpu.replace(' ', '_')}")
    if request.max_dph is not None:
        terms.append(f"dph<={request.max_dph}")
    vs = cloud.settings.vast
    return comfy_offer_query(
        terms,
        image=request.image or vs.image,
        disk_gb=request.disk_gb or vs.disk_gb,
        order=request.order,
        limit=limit,
        defaults=OfferDefaults(min_reliability=vs.min_reliability, min_inet_down=vs.min_inet_down),
    )


async def candidates(cloud: Cloud, request: UpRequest) -> list[Offer]:
    """The offers `up` tries, best first (at most `vast.max_offers`); UsageError when none
    matches, naming the filters Vast was asked for. Rents nothing (`up --dry-run`)."""
    query = offer_query(cloud, request, limit=20)
    offers = await cloud.vast.search_offers(query)
    if not offers:
        raise UsageError(
            f"no offer matches: {describe_filters(query)}",
            hint=f"{NO_MATCH_HINT}; comfyfleet offers shows what is available",
        )
    return offers[: cloud.settings.vast.max_offers]


def _create_env(token: str) -> dict[str, str]:
    return {
        "WEB_PASSWORD": token,
        "OPEN_BUTTON_PORT": "1111",
        "PORTAL_CONFIG": PORTAL_CONFIG,
    }


async def up(cloud: Cloud, request: UpRequest, progress: Progress) -> UpResult:
    """Rent, create and wait; tries up to `vast.max_offers` offers. See module docstring."""
    vs = cloud.settings.vast
    if request.name is not None and request.name.isdigit():
        raise UsageError(f"name {request.name!r} is a number", hint="names start with a letter")
    progress("reconciling with Vast")
    actions = await reconcile(cloud)
    for action in actions:
        progress(action.describe())
    # Registered before the create, so the new instance comes up with our key installed.
    await ensure_account_key(cloud)
    progress("searching offers")
    offers = await candidates(cloud, request)
    image, disk = request.image or vs.image, request.disk_gb or vs.disk_gb
    last_error: NotReady | OfferUnavailable | None = None
    for attempt, offer in enumerate(offers, start=1):
        progress(
            f"renting offer {offer.id}: {offer.num_gpus}x {offer.gpu_name}, "
            f"${offer.dph_total:.3f}/h, {offer.geolocation or 'unknown location'}"
        )
        intent = cloud.db.intents.record(
            pool=MANUAL_POOL,
            offer=offer,
            request={"image": image, "disk_gb": disk, "offer_id": offer.id, **owner_fields()},
            name=request.name,
            image=image,
            disk_gb=disk,
        )
        vast_id = await _create(cloud, intent, offer, image, disk, request.name)
        if vast_id is None:
            last_error = OfferUnavailable(f"offer {offer.id} was taken", hint=None)
            continue
        progress(f"created instance {vast_id}; waiting until ComfyUI answers")
        deadline = cloud.clock.monotonic() + vs.ready_timeout
        try:
            inst = await wait_ready(cloud, vast_id, deadline=deadline, progress=progress)
        except NotReady as exc:
            last_error = exc
            progress(f"{exc.message}; destroying it")
            await _discard(cloud, vast_id, exc.message)
            continue
        except asyncio.CancelledError:
            # Interrupted while it starts: it is tracked, so nothing leaks; say what is left.
            progress(
                f"stopped waiting: instance {vast_id} keeps starting and is tracked "
                f"(comfyfleet ls); drop it with: comfyfleet destroy {vast_id} --yes"
            )
            raise
        row = cloud.db.instances.mark_ready(_row_id(cloud, vast_id))
        endpoint = comfy_endpoint(cloud, inst)
        assert endpoint is not None  # wait_ready checked ComfyUI through it
        return UpResult(row, inst, offer, endpoint.url, attempt, actions)
    assert last_error is not None
    raise NotReady(
        f"no instance became ready after {min(len(offers), vs.max_offers)} offer(s): "
        f"{last_error.message}",
        fatal=True,
        hint="try another GPU or region, or raise vast.ready_timeout",
    )


async def _create(
    cloud: Cloud, intent: Intent, offer: Offer, image: str, disk: float, name: str | None
) -> int | None:
    """Create from `offer` under `intent`; None when the offer was gone (nothing left)."""
    tag = intent.label
    token = web_token(cloud.settings.config_dir(), tag)
    try:
        vast_id = await cloud.vast.create_instance(
            offer.id,
            image=image,
            disk_gb=disk,
            env=_create_env(token),
            ports=TEMPLATE_PORTS,
            onstart="entrypoint.sh",
            label=vast_label(tag, name),
            runtype=RUNTYPE,
        )
    except VastError as exc:
        # Whatever the failure, Vast may have left a contract: find it and destroy it now.
        await _sweep(cloud, intent, exc)
        if isinstance(exc, OfferUnavailable):
            return None
        raise
    cloud.db.intents.complete(intent.id, vast_id)
    return vast_id


async def _sweep(cloud: Cloud, intent: Intent, exc: VastError) -> None:
    """Destroy every contract a failed create left (reported id, or found by its tag).

    Marks the intent cleaned when nothing is left; if a destroy fails, the intent stays failed
    for reconcile and a VastCreateFailed says so: no further create is attempted.
    """
    leftovers = set()
    if isinstance(exc, VastCreateFailed) and exc.created_instance_id is not None:
        leftovers.add(exc.created_instance_id)
    try:
        listed = await cloud.vast.list_instances()
        leftovers |= {i.id for i in listed if tracking_tag(i.label) == intent.label}
        for vast_id in sorted(leftovers):
            await cloud.vast.destroy(vast_id)
    except VastError as cleanup:
        cloud.db.intents.fail(intent.id, exc.message, cleaned=False)
        left = ", ".join(str(i) for i in sorted(leftovers)) or "unknown"
        raise VastCreateFailed(
            f"{exc.message}; cleaning up what it may have left (instances: {left}) failed: "
            f"{cleanup.message}",
            created_instance_id=min(leftovers) if leftovers else None,
            hint="run `comfyfleet ls` to reconcile (it destroys untracked leftovers); "
            "no further create was attempted",
        ) from cleanup
    detail = f"; destroyed leftover contract(s) {sorted(leftovers)}" if leftovers else ""
    cloud.db.intents.fail(intent.id, exc.message + detail, cleaned=True)
    _forget_row(cloud, intent, "create failed" + detail)


def _forget_row(cloud: Cloud, intent: Intent, reason: str) -> None:
    for row in cloud.db.instances.live():
        if row.intent_id == intent.id:
            cloud.db.instances.mark_destroyed(row.id, reason=reason)


def _row_id(cloud: Cloud, vast_id: int) -> int:
    row = cloud.db.instances.by_vast_id(vast_id)
    assert row is not None  # intents.complete bound it
    return row.id


async def _discard(cloud: Cloud, vast_id: int, reason: str) -> None:
    await cloud.vast.destroy(vast_id)
    cloud.db.instances.mark_destroyed(_row_id(cloud, vast_id), reason=reason)
