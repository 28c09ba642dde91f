"""The async ComfyUI client: every server call, typed events, and waiting for results.

One `ComfyClient` talks to one server under one clientId (uuid4 hex unless given), which
it sends with every prompt so the server routes that prompt's events to this client's
socket. Answers are parsed into `comfyfleet.models.comfy` values; failures are
`comfyfleet.errors` types (see `comfy.http`). Prompt ids are chosen by the client, so
submitting again after a lost answer never queues the same prompt twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from comfyfleet.comfy.events import EventHub, EventStream
from comfyfleet.comfy.files import FileCalls
from comfyfleet.comfy.http import RETRY_DELAYS, ComfyHttp, path_segment
from comfyfleet.comfy.watch import wait_prompt
from comfyfleet.comfy.workflow.validate import invalid_from_wire, node_errors_from_wire
from comfyfleet.config import ComfySettings
from comfyfleet.errors import (
    ComfyNotFound,
    ComfyProtocolError,
    ComfyUnreachable,
)
from comfyfleet.graph.prompt import prompt_titles
from comfyfleet.models.comfy import (
    HistoryEntry,
    PromptAccepted,
    PromptResult,
    QueueState,
    SystemStats,
    parse_history,
    wire_int,
    wire_num,
    wire_obj,
    wire_str,
    wire_str_list,
)
from comfyfleet.models.events import Event
from comfyfleet.models.nodes import NodeCatalog, NodeDef, parse_node_def
from comfyfleet.util.clock import Clock, SystemClock
from comfyfleet.util.resource import AsyncResource

log = logging.getLogger(__name__)

#: POSTs of one prompt (each after checking that the previous one did not land).
SUBMIT_ATTEMPTS = 3
#: Seconds a POST /prompt whose answer was lost may take to show in the queue before it is
#: taken as never arrived (ComfyUI validates a prompt before queueing it).
LANDING_WINDOW = 30.0

# /object_info is ~0.5 MB and changes only when nodes are installed: one copy per server
# (base URL + token) for the whole process; `object_info(refresh=True)` replaces it.
_CATALOGS: dict[tuple[str, str], NodeCatalog] = {}


def forget_object_info(base_url: str | None = None) -> None:
    """Drop cached catalogs (of one server, or all): after nodes were installed elsewhere."""
    for key in [k for k in _CATALOGS if base_url is None or k[0] == base_url.rstrip("/")]:
        del _CATALOGS[key]


class ComfyClient(FileCalls, AsyncResource):
    """An async client for one ComfyUI server (HTTP + WebSocket)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        settings: ComfySettings | None = None,
        clock: Clock | None = None,
        client_id: str | None = None,
    ) -> None:
        self._settings = settings or ComfySettings()
        if token is None and self._settings.token is not None:
            token = self._settings.token.get_secret_value()
        self._clock = clock or SystemClock()
        self._http = ComfyHttp(
            base_url, token=token, settings=self._settings, clock=self._clock, transport=transport
        )
        self.base_url = self._http.base_url
        self.client_id = client_id or uuid.uuid4().hex
        self._cache_key = (self.base_url, hashlib.sha256((token or "").encode()).hexdigest())
        self._hub = EventHub(
            self.base_url, self.client_id, token=token, settings=self._settings, clock=self._clock
        )

    def __repr__(self) -> str:
        return f"ComfyClient({self._http.display_url!r}, client_id={self.client_id!r})"

    async def aclose(self) -> None:
        """Close the event socket and the HTTP connections."""
        await self._hub.aclose()
        await self._http.aclose()

    # --- server ----------------------------------------------------------------------------

    async def system_stats(self) -> SystemStats:
        return SystemStats.from_wire(await self._http.get_json("system_stats"))

    async def features(self) -> dict[str, Any]:
        return dict(wire_obj(await self._http.get_json("features"), "features"))

    async def object_info(self, *, refresh: bool = False) -> NodeCatalog:
        """Every node class of the server (cached per server for the process)."""
        catalog = None if refresh else _CATALOGS.get(self._cache_key)
        if catalog is None:
            body = wire_obj(await self._http.get_json("object_info"), "object_info")
            catalog = _CATALOGS[self._cache_key] = NodeCatalog(body)
        return catalog

    async def node_info(self, class_type: str) -> NodeDef | None:
        """One node class, fresh from the server (combo lists included); None if unknown."""
        body = wire_obj(
            await self._http.get_json(f"object_info/{path_segment(class_type)}"), "node"
        )
        raw = body.get(class_type)
        return None if raw is None else parse_node_def(class_type, wire_obj(raw, class_type))

    async def models(self) -> list[str]:
        """The model folder names the server knows (checkpoints, loras, …)."""
        return list(wire_str_list(await self._http.get_json("models"), "models"))

    async def model_files(self, folder: str) -> list[str]:
        """File names in one model folder, relative to it; unknown folder -> ComfyNotFound."""
        try:
            body = await self._http.get_json(f"models/{path_segment(folder)}")
        except ComfyNotFound as exc:
            raise ComfyNotFound(
                f"the server has no model folder {folder!r}",
                status=404,
                hint="list the folders with models()",
            ) from exc
        return list(wire_str_list(body, f"models/{folder}"))

    async def embeddings(self) -> list[str]:
        return list(wire_str_list(await self._http.get_json("embeddings"), "embeddings"))

    # --- prompts ---------------------------------------------------------------------------

    async def queue_prompt(
        self,
        prompt: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
        partial_targets: Sequence[str] | None = None,
        front: bool = False,
        number: float | None = None,
        resubmit: bool = False,
    ) -> PromptAccepted:
        """Queue an API-format prompt under `prompt_id` (uuid4 when None).

        Never queues one id twice: with `resubmit` (the id may have been queued before, e.g.
        a job retried after a crash) an id already queued, running or in history is returned
        as `existing`; and after a transport error the queue and history are always checked
        before posting again. 400 raises PromptRejected (every node error in it);
        a 200 with node_errors (some outputs dropped) returns them in the answer.
        """
        pid = prompt_id or str(uuid.uuid4())
        if prompt_id is not None and resubmit:
            known = await self._find_known(pid)
            if known is not None:
                log.info("prompt %s is already known to the server; not queued again", pid)
                return known
        body: dict[str, Any] = {
            "prompt": dict(prompt),
            "client_id": self.client_id,
            "prompt_id": pid,
            "extra_data": dict(extra_data or {}),
        }
        if partial_targets:
            body["partial_execution_targets"] = [str(t) for t in partial_targets]
        if number is not None:
            body["number"] = number
        elif front:
            body["front"] = True
        response = await self._post_prompt(pid, body)
        if isinstance(response, PromptAccepted):
            return response
        data = wire_obj(self._http.decode_json(response, "POST /prompt"), "POST /prompt answer")
        titles = prompt_titles(prompt)
        # A cached catalog fills in the option lists ComfyUI leaves out of long combos.
        catalog = _CATALOGS.get(self._cache_key)
        if response.status_code == 400:
            raise invalid_from_wire(data, rejected=True, titles=titles, catalog=catalog)
        number_sent = data.get("number")
        node_errors = node_errors_from_wire(data.get("node_errors"), titles=titles, catalog=catalog)
        return PromptAccepted(
            prompt_id=wire_str(data.get("prompt_id", pid), "prompt_id"),
            number=None if number_sent is None else wire_num(number_sent, "number"),
            node_errors=tuple(node_errors),
        )

    async def _post_prompt(
        self, pid: str, body: Mapping[str, Any]
    ) -> httpx.Response | PromptAccepted:
        """POST /prompt; after a transport error, look for the prompt before posting again."""
        last: ComfyUnreachable | None = None
        for attempt in range(SUBMIT_ATTEMPTS):
            if last is not None:
                known = await self._look_after_failure(pid, last)
                if known is not None:
                    return known
            try:
                return await self._http.request(
                    "POST", "prompt", json_body=body, accept=(400,), retry=False
                )
            except ComfyUnreachable as exc:
                log.info("POST /prompt attempt %d failed: %s", attempt + 1, exc.message)
                last = exc
        assert last is not None
        raise last

    async def _look_after_failure(self, pid: str, error: ComfyUnreachable) -> PromptAccepted | None:
        """Whether a POST that broke did land; raises `error` if the server stays unreachable.

        A POST the server may have received is looked for during `LANDING_WINDOW`, not once:
        posting again while the first is still being validated would run the prompt twice.
        """
        deadline = self._clock.monotonic() + (LANDING_WINDOW if error.maybe_delivered else 0.0)
        reached = False
        for attempt in itertools.count():
            await self._clock.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            try:
                known = await self._find_known(pid)
            except ComfyUnreachable:
                known = None
            else:
                reached = True
            if known is not None:
                return known
            tried = reached or attempt + 1 >= len(RETRY_DELAYS)
            if tried and self._clock.monotonic() >= deadline:
                break
        if not reached:
            raise error
        return None

    async def _find_known(self, pid: str) -> PromptAccepted | None:
        # Queue first, then history: an item leaves the queue as its history entry is written.
        for item in (q := await self.queue()).running + q.pending:
            if item.prompt_id == pid:
                return PromptAccepted(pid, item.number, existing=True)
        entry = await self.history(pid)
        if entry is not None:
            return PromptAccepted(pid, entry.item.number if entry.item else None, existing=True)
        return None

    async def queue(self) -> QueueState:
        return QueueState.from_wire(await self._http.get_json("queue"))

    async def queue_remaining(self) -> int:
        body = wire_obj(await self._http.get_json("prompt"), "GET /prompt")
        info = wire_obj(body.get("exec_info"), "exec_info")
        return wire_int(info.get("queue_remaining"), "queue_remaining")

    async def clear_queue(self) -> None:
        """Drop every pending prompt (the running one is not touched: see interrupt)."""
        await self._http.request("POST", "queue", json_body={"clear": True})

    async def delete_queued(self, prompt_ids: Sequence[str]) -> None:
        """Drop these prompts from the pending queue (unknown or running ids are ignored)."""
        await self._http.request("POST", "queue", json_body={"delete": list(prompt_ids)})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt; with `prompt_id`, only if that one is running."""
        body = {"prompt_id": prompt_id} if prompt_id is not None else {}
        await self._http.request("POST", "interrupt", json_body=body)

    async def free(self, *, unload_models: bool = False, free_memory: bool = False) -> None:
        body = {"unload_models": unload_models, "free_memory": free_memory}
        await self._http.request("POST", "free", json_body=body)

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt's entry; None while pending or running, or if unknown."""
        entries = parse_history(await self._http.get_json(f"history/{path_segment(prompt_id)}"))
        return entries.get(prompt_id)

    async def history_all(
        self, *, max_items: int | None = None, offset: int | None = None
    ) -> dict[str, HistoryEntry]:
        params = {}
        if max_items is not None:
            params["max_items"] = str(max_items)
        if offset is not None:
            params["offset"] = str(offset)
        return parse_history(await self._http.get_json("history", params or None))

    async def clear_history(self) -> None:
        await self._http.request("POST", "history", json_body={"clear": True})

    async def delete_history(self, prompt_ids: Sequence[str]) -> None:
        await self._http.request("POST", "history", json_body={"delete": list(prompt_ids)})

    # --- events ----------------------------------------------------------------------------

    def events(self) -> EventStream:
        """A stream of this client's typed events (use `async with`); see comfy.events."""
        return self._hub.stream()

    async def wait_for(
        self,
        prompt_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
        stream: EventStream | None = None,
    ) -> PromptResult:
        """Wait until `prompt_id` is done and return its result (see comfy.watch).

        Pass the `stream` opened before queueing so no early event is missed; without one a
        stream is opened here (and if the socket cannot open at all, /history is polled).
        Raises ExecutionFailed, ExecutionInterrupted, JobTimeout (the prompt is left as it
        is: the caller decides whether to interrupt) or PromptLost.
        """
        kwargs: dict[str, Any] = {
            "history": self.history,
            "queue": self.queue,
            "settings": self._settings,
            "clock": self._clock,
            "on_event": on_event,
            "timeout": timeout,
        }
        if stream is not None:
            return await wait_prompt(prompt_id, stream, early_stream=True, **kwargs)
        own = self.events()
        try:
            await own.open()
        except (ComfyUnreachable, ComfyProtocolError) as exc:
            log.warning("no event stream (%s); following prompt %s by polling", exc, prompt_id)
            return await wait_prompt(prompt_id, None, **kwargs)
        try:
            return await wait_prompt(prompt_id, own, **kwargs)
        finally:
            await asyncio.shield(own.aclose())
