"""What a create answer means: the new instance, or which kind of failure.

Vast can fail a create and still report a contract (`new_contract` in an error answer): that
instance bills until destroyed, so the error carries its id. A 5xx, an answer that is not JSON
or a success without an id leave the outcome unknown: an instance may exist that only its
label can find. A gone offer (404/410 `no_such_ask`) is OfferUnavailable: search again.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx

from comfyfleet.errors import (
    OfferUnavailable,
    VastCreateFailed,
    VastNotFound,
    VastProtocolError,
    VastServerError,
)
from comfyfleet.util.redact import register_secret
from comfyfleet.vast import parse
from comfyfleet.vast.http import VastHttp

log = logging.getLogger(__name__)

UNKNOWN_OUTCOME_HINT = "look for the instance by its label before renting again"
CLEANUP_HINT = (
    "it bills until destroyed: comfyfleet destroys it on its next reconcile, "
    "or run `comfyfleet destroy {id}`"
)
_SECRET_NAME = re.compile(r"(?i)pass|token|secret|key|auth|credential")


def created_instance_id(http: VastHttp, response: httpx.Response, offer_id: int, what: str) -> int:
    """The new instance id from a create answer, or the right error for a failed create."""
    ok = response.is_success
    data: Any
    try:
        data = http.decode(response, what)
    except VastProtocolError as exc:
        if ok or response.status_code >= 500:
            raise VastCreateFailed(
                f"{exc.message}; an instance may exist",
                outcome_unknown=True,
                hint=UNKNOWN_OUTCOME_HINT,
                status=response.status_code,
            ) from None
        data = None  # a 4xx in plain text: judged by its status below
    new_id = parse.contract_id(data)
    error = http.body_error(data, response, what) if ok else http.error_for(response, what)
    if error is None:
        if new_id is None:
            raise VastCreateFailed(
                f"{what}: Vast answered success without an instance id",
                outcome_unknown=True,
                hint=UNKNOWN_OUTCOME_HINT,
                status=response.status_code,
            )
        log.info("created instance %d from offer %d", new_id, offer_id)
        return new_id
    if new_id is not None:
        raise VastCreateFailed(
            f"{error.message}; Vast still reported instance {new_id}",
            created_instance_id=new_id,
            hint=CLEANUP_HINT.format(id=new_id),
            status=error.status,
            code=error.code,
        )
    if error.code == "no_such_ask" or isinstance(error, VastNotFound):
        raise OfferUnavailable(
            f"offer {offer_id} is no longer available ({error.message})",
            hint="offers are single use and short-lived: search again",
            status=error.status,
            code=error.code,
        )
    if isinstance(error, VastServerError):
        raise VastCreateFailed(
            f"{error.message}; an instance may exist",
            outcome_unknown=True,
            hint=UNKNOWN_OUTCOME_HINT,
            status=error.status,
            code=error.code,
        )
    raise error


def register_create_secrets(env: Mapping[str, str], image_login: str | None) -> None:
    """Mask secret-looking env values (WEB_PASSWORD, *_TOKEN...) if Vast ever echoes them."""
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            register_secret(value)
    if image_login:
        register_secret(image_login)
        for flag, value in itertools.pairwise(image_login.split()):
            if flag in ("-p", "--password"):
                register_secret(value)
