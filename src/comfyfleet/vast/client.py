"""The async Vast.ai client: offers, the instance lifecycle, logs, SSH keys, the account.

    async with VastClient(key) as vast:
        offers = await vast.search_offers(comfy_offer_query("gpu_name=RTX_4090", image=IMAGE))
        instance_id = await vast.create_instance(offers[0].id, image=IMAGE, disk_gb=80, ...)

Every answer is parsed into `comfyfleet.models.vast` types (`vast.parse`), every failure is a
`comfyfleet.errors.VastError` (`vast.http`). `destroy` is idempotent: an instance that is
already gone counts as destroyed. A create that fails but reports a contract raises
`VastCreateFailed` carrying its id, so the caller can destroy it; one whose outcome is unknown
says so (`outcome_unknown`), and only the instance's label can find it then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from comfyfleet.errors import (
    UsageError,
    VastCreateFailed,
    VastLogsUnavailable,
    VastNotFound,
    VastProtocolError,
    VastUnreachable,
)
from comfyfleet.models.vast import Instance, Offer, SshKey, VastUser
from comfyfleet.util.clock import Clock, SystemClock
from comfyfleet.util.redact import install_log_redaction, redact_url
from comfyfleet.util.resource import AsyncResource
from comfyfleet.vast import parse
from comfyfleet.vast.bodies import check_public_key, create_body
from comfyfleet.vast.create import (
    UNKNOWN_OUTCOME_HINT,
    created_instance_id,
    register_create_secrets,
)
from comfyfleet.vast.http import DEFAULT_BASE_URL, OUTCOME_UNKNOWN, VastHttp

log = logging.getLogger(__name__)
install_log_redaction(__name__)

PAGE_SIZE = 25  # the v1 list's maximum
MAX_LABEL_LENGTH = 1024
MAX_PAGES = 1000
LOG_TRIES = 30
LOG_INTERVAL = 0.3  # seconds between result_url polls (about 9 s in all, as the official CLI)
_GONE_CODES = frozenset({"not_found", "no_such_instance"})


class VastClient(AsyncResource):
    """One Vast account, reached at `base_url` (the sandbox is just another base URL)."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        retries: int = 3,
        timeout: float = 120.0,
    ) -> None:
        self._clock = clock or SystemClock()
        self._http = VastHttp(
            api_key,
            base_url=base_url,
            transport=transport,
            clock=self._clock,
            retries=retries,
            timeout=timeout,
        )
        self._v1_list: bool | None = None  # None: not tried yet; False: fall back to v0

    def __repr__(self) -> str:
        return f"VastClient({self._http.display_url!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- offers and create ----------------------------------------------------------------

    async def search_offers(self, query: Mapping[str, Any]) -> list[Offer]:
        """`POST /api/v0/bundles/` with a wire query (see `vast.query` / `vast.search`)."""
        what = "search offers"
        response = await self._http.call("POST", "/api/v0/bundles/", what=what, json_body=query)
        return parse.parse_offers(self._http.decode(response, what))

    async def create_instance(
        self,
        offer_id: int,
        *,
        image: str,
        disk_gb: float,
        env: Mapping[str, str] | None = None,
        ports: Sequence[int] = (),
        onstart: str | None = None,
        label: str | None = None,
        runtype: str = "ssh_direc ssh_proxy",
        price: float | None = None,
        cancel_unavail: bool = True,
        image_login: str | None = None,
    ) -> int:
        """Rent offer `offer_id` (`PUT /api/v0/asks/{id}/`); returns the new instance id.

        `ports` are mapped as `-p P:P`; `env` values (tokens included) are sent only in the
        body. OfferUnavailable when the offer is gone; VastCreateFailed when the create failed
        (with `created_instance_id` if Vast reported a contract anyway, or `outcome_unknown`).
        """
        body = create_body(
            image=image,
            disk_gb=disk_gb,
            env=env or {},
            ports=ports,
            onstart=onstart,
            label=label,
            runtype=runtype,
            price=price,
            cancel_unavail=cancel_unavail,
            image_login=image_login,
        )
        register_create_secrets(env or {}, image_login)
        what = f"create an instance from offer {offer_id}"
        try:
            response = await self._http.call(
                "PUT",
                f"/api/v0/asks/{int(offer_id)}/",
                what=what,
                json_body=body,
                accept=range(400, 600),
                idempotent=False,
            )
        except VastUnreachable as exc:
            if exc.code != OUTCOME_UNKNOWN:
                raise
            raise VastCreateFailed(
                f"{exc.message}; the create may have reached Vast",
                outcome_unknown=True,
                hint=UNKNOWN_OUTCOME_HINT,
            ) from exc
        return created_instance_id(self._http, response, offer_id, what)

    # -- instances -------------------------------------------------------------------------

    async def list_instances(self) -> list[Instance]:
        """Every instance of the account: the v1 list page by page, else the legacy v0 list."""
        if self._v1_list is not False:
            found = await self._list_v1()
            if found is not None:
                self._v1_list = True
                return found
            self._v1_list = False
            log.info(
                "the v1 instance list is missing on %s; using the v0 list", self._http.display_url
            )
        what = "list instances"
        response = await self._http.call(
            "GET", "/api/v0/instances/", what=what, params={"owner": "me"}
        )
        instances, _ = parse.parse_instance_page(self._http.decode(response, what))
        return instances

    async def _list_v1(self) -> list[Instance] | None:
        """All v1 pages; None when the server has no v1 list (404)."""
        what = "list instances"
        found: dict[int, Instance] = {}
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"limit": str(PAGE_SIZE)}
            if token is not None:
                params["after_token"] = token
            response = await self._http.call(
                "GET", "/api/v1/instances/", what=what, params=params, accept=(404,)
            )
            if response.status_code == 404:
                if token is None and self._v1_list is None:
                    error = self._http.error_for(response, what)
                    if not isinstance(error, VastNotFound):
                        raise error
                    return None
                raise self._http.error_for(response, what)
            page, token = parse.parse_instance_page(self._http.decode(response, what))
            for instance in page:
                found.setdefault(instance.id, instance)  # the list can shift while paging
            if token is None:
                return list(found.values())
            if token in seen:
                raise VastProtocolError(f"{what}: the page token repeats; the list never ends")
            seen.add(token)
        raise VastProtocolError(f"{what}: more than {MAX_PAGES} pages")

    async def show_instance(self, instance_id: int) -> Instance | None:
        """One instance, or None when it does not exist (any more)."""
        what = f"show instance {instance_id}"
        response = await self._http.call(
            "GET",
            f"/api/v0/instances/{int(instance_id)}/",
            what=what,
            params={"owner": "me"},
            accept=(404,),
        )
        if response.status_code == 404:
            error = self._http.error_for(response, what)
            if not isinstance(error, VastNotFound):
                raise error
            return None
        return parse.parse_show(self._http.decode(response, what))

    async def start(self, instance_id: int) -> None:
        """Ask Vast to run a stopped instance (it may wait for its GPU: "scheduling")."""
        await self._manage(instance_id, {"state": "running"}, f"start instance {instance_id}")

    async def stop(self, instance_id: int) -> None:
        """Stop an instance: the GPU is released, storage keeps billing."""
        await self._manage(instance_id, {"state": "stopped"}, f"stop instance {instance_id}")

    async def set_label(self, instance_id: int, label: str) -> None:
        """Set the instance's one label field (comfyfleet's tracking tag lives there)."""
        if len(label) > MAX_LABEL_LENGTH:
            raise UsageError(
                f"label is {len(label)} characters long; Vast allows {MAX_LABEL_LENGTH}"
            )
        await self._manage(instance_id, {"label": label}, f"label instance {instance_id}")

    async def reboot(self, instance_id: int) -> None:
        """Restart the container in place (keeps the GPU and the disk)."""
        what = f"reboot instance {instance_id}"
        await self._put_ok(f"/api/v0/instances/reboot/{int(instance_id)}/", {}, what)

    async def _manage(self, instance_id: int, body: dict[str, Any], what: str) -> None:
        await self._put_ok(f"/api/v0/instances/{int(instance_id)}/", body, what)

    async def _put_ok(self, path: str, body: dict[str, Any], what: str) -> None:
        response = await self._http.call("PUT", path, what=what, json_body=body)
        self._http.check_success(self._http.decode(response, what), response, what)

    async def destroy(self, instance_id: int) -> bool:
        """Destroy an instance; True if it existed, False if it was already gone."""
        what = f"destroy instance {instance_id}"
        response = await self._http.call(
            "DELETE",
            f"/api/v0/instances/{int(instance_id)}/",
            what=what,
            accept=range(400, 500),
        )
        ok = response.is_success
        try:
            data = self._http.decode(response, what) if response.content.strip() else None
        except VastProtocolError:
            data = None  # a 2xx needs no body; a 4xx without JSON is judged by its status
        error = (
            self._http.body_error(data, response, what)
            if ok
            else self._http.error_for(response, what)
        )
        if error is None:
            log.info("destroyed instance %d", instance_id)
            return True
        if isinstance(error, VastNotFound) or error.code in _GONE_CODES:
            log.info("instance %d was already gone", instance_id)
            return False
        raise error

    # -- logs --------------------------------------------------------------------------------

    async def logs(
        self,
        instance_id: int,
        tail: int = 1000,
        *,
        tries: int = LOG_TRIES,
        interval: float = LOG_INTERVAL,
    ) -> str:
        """The last `tail` lines of the instance's container log.

        Vast writes the log to a `result_url` that is not ready at once; it is fetched
        without the API key until it answers 200, `tries` times `interval` seconds apart.
        """
        what = f"logs of instance {instance_id}"
        response = await self._http.call(
            "PUT",
            f"/api/v0/instances/request_logs/{int(instance_id)}/",
            what=what,
            json_body={"tail": str(int(tail))},
        )
        data = self._http.decode(response, what)
        self._http.check_success(data, response, what)
        url = data.get("result_url") if isinstance(data, Mapping) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise VastProtocolError(f"{what}: the answer has no usable result_url")
        last = "no answer"
        for attempt in range(max(1, tries)):
            if attempt:
                await self._clock.sleep(interval)
            try:
                result = await self._http.get_unauthenticated(url, what=what)
            except VastUnreachable as exc:
                last = exc.message
                continue
            if result.status_code == 200:
                return result.content.decode("utf-8", errors="replace")
            last = f"HTTP {result.status_code}"
        raise VastLogsUnavailable(
            f"{what} were not ready at {redact_url(url)} after {tries} tries ({last})",
            hint="the instance may still be starting; try again in a minute",
        )

    # -- SSH keys and the account ------------------------------------------------------------

    async def ssh_keys(self) -> list[SshKey]:
        """The account's SSH public keys (installed in every instance)."""
        what = "list SSH keys"
        response = await self._http.call("GET", "/api/v0/ssh/", what=what)
        return parse.parse_ssh_keys(self._http.decode(response, what))

    async def add_ssh_key(self, public_key: str) -> SshKey:
        """Register a public key with the account; Vast adds it to current instances too."""
        key = check_public_key(public_key)
        what = "add an SSH key"
        response = await self._http.call(
            "POST", "/api/v0/ssh/", what=what, json_body={"ssh_key": key}, idempotent=False
        )
        data = self._http.decode(response, what)
        self._http.check_success(data, response, what)
        raw = data.get("key") if isinstance(data, Mapping) and "key" in data else data
        if isinstance(raw, str):  # some answers carry only the text
            raw = {**data, "public_key": raw}
        return parse.parse_ssh_key(raw)

    async def attach_ssh_key(self, instance_id: int, public_key: str) -> None:
        """Install a public key in one instance (`POST /instances/{id}/ssh/`)."""
        key = check_public_key(public_key)
        what = f"attach an SSH key to instance {instance_id}"
        response = await self._http.call(
            "POST",
            f"/api/v0/instances/{int(instance_id)}/ssh/",
            what=what,
            json_body={"ssh_key": key},
        )
        self._http.check_success(self._http.decode(response, what), response, what)

    async def current_user(self) -> VastUser:
        """The account: id, email, credit balance (the raw answer's api_key is dropped)."""
        what = "show the current user"
        response = await self._http.call("GET", "/api/v0/users/current/", what=what)
        return parse.parse_user(self._http.decode(response, what))
