"""Runs one prompt the way ComfyUI's `PromptExecutor` does, event for event.

Per prompt: execution_start, execution_cached, then each node in ComfyUI's order (see
`node_run`), then execution_success, or execution_error / execution_interrupted.
executing/executed/execution_* go only to the prompt's client; progress and progress_state go
to it, or to everyone when the prompt has no client id. Interrupts are cooperative: checked
when a node starts and at every progress step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from comfyfleet.models.nodes import NodeCatalog
from comfyfleet.sandbox.comfy.graph_run import ExecutionList, OutputCaches, Uncacheable, signature
from comfyfleet.sandbox.comfy.hub import Hub
from comfyfleet.sandbox.comfy.knobs import Knobs
from comfyfleet.sandbox.comfy.layout import Layout
from comfyfleet.sandbox.comfy.logbook import LogBook
from comfyfleet.sandbox.comfy.node_run import (
    Interrupted,
    NodeRun,
    Progress,
    RunFailure,
    implementation,
)
from comfyfleet.sandbox.comfy.packs import PackSet
from comfyfleet.util.clock import Clock


class Executor:
    """One worker's executor: caches survive between prompts until `reset` (POST /free)."""

    def __init__(
        self,
        hub: Hub,
        layout: Layout,
        knobs: Knobs,
        clock: Clock,
        book: LogBook,
        preview_method: str,
        packs: PackSet,
    ) -> None:
        self.hub, self.layout, self.knobs, self.clock, self.book = hub, layout, knobs, clock, book
        self.preview_method = preview_method
        self.packs = packs
        self.caches = OutputCaches()
        self.interrupt_requested = False
        self.knob_event = asyncio.Event()

    def reset(self) -> None:
        self.caches = OutputCaches()

    def interrupt(self) -> None:
        self.interrupt_requested = True

    def check_interrupt(self) -> None:
        if self.interrupt_requested:
            self.interrupt_requested = False
            raise Interrupted()

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def execute(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        outputs: list[str],
        catalog: NodeCatalog,
    ) -> tuple[bool, list[Any], dict[str, Any]]:
        """Run a queued prompt; returns (success, status messages, {"outputs", "meta"})."""
        self.interrupt_requested = False
        client_id = extra_data.get("client_id") if isinstance(extra_data, dict) else None
        self.hub.client_id = client_id
        messages: list[Any] = []

        def add_message(event: str, data: dict[str, Any], broadcast: bool) -> None:
            data = {**data, "timestamp": self._now_ms()}
            messages.append([event, data])
            if client_id is not None or broadcast:
                self.hub.send_sync(event, data, client_id)

        add_message("execution_start", {"prompt_id": prompt_id}, False)
        progress = Progress(self.hub, prompt_id, client_id)
        sigs = {
            nid: signature(
                prompt, nid, self._is_changed_fn(prompt, catalog), self._includes_id_fn(catalog)
            )
            for nid in prompt
        }
        self.caches.keep_only(sigs, prompt)
        cached = [nid for nid in prompt if sigs[nid] in self.caches.outputs]
        add_message("execution_cached", {"nodes": cached, "prompt_id": prompt_id}, False)

        run = NodeRun(self, prompt, prompt_id, extra_data, client_id, catalog, sigs, progress)
        elist = ExecutionList(
            prompt,
            is_output=lambda n: catalog[prompt[n]["class_type"]].output_node,
            is_async=lambda n: bool(catalog[prompt[n]["class_type"]].raw.get("api_node")),
            is_cached=lambda n: sigs[n] in self.caches.outputs,
        )
        for node_id in outputs:
            elist.add_node(node_id)
        success = True
        while not elist.is_empty():
            next_id = elist.next_node()
            try:
                if next_id is None:
                    raise RunFailure(_cycle_details(elist), interrupted=False)
                await run.node(next_id)
            except RunFailure as failure:
                success = False
                self._report(add_message, prompt, prompt_id, run.executed, failure)
                break
            elist.complete(next_id)
        else:
            add_message("execution_success", {"prompt_id": prompt_id}, False)

        order = list(self.caches.ui)
        with_ui = sorted(
            (nid for nid in prompt if sigs[nid] in self.caches.ui),
            key=lambda n: order.index(sigs[n]),
        )
        result = {
            "outputs": {nid: self.caches.ui[sigs[nid]]["output"] for nid in with_ui},
            "meta": {nid: self.caches.ui[sigs[nid]]["meta"] for nid in with_ui},
        }
        self.hub.last_node_id = None
        return success, messages, result

    def _report(
        self,
        add_message: Callable[[str, dict[str, Any], bool], None],
        prompt: dict[str, Any],
        prompt_id: str,
        executed: list[str],
        failure: RunFailure,
    ) -> None:
        node_id = failure.details["node_id"]
        base = {
            "prompt_id": prompt_id,
            "node_id": node_id,
            "node_type": prompt[node_id]["class_type"],
            "executed": list(executed),
        }
        if failure.interrupted:
            self.book.line("Processing interrupted")
            add_message("execution_interrupted", base, True)
            return
        d = failure.details
        text = d["exception_message"].rstrip("\n")
        self.book.line(f"!!! Exception during processing !!! {text}")
        self.book.line(
            "Traceback (most recent call last):\n"
            + "".join(d["traceback"])
            + f"{d['exception_type']}: {text}"
        )
        add_message(
            "execution_error",
            {
                **base,
                "exception_message": d["exception_message"],
                "exception_type": d["exception_type"],
                "traceback": d["traceback"],
                "current_inputs": d["current_inputs"],
                "current_outputs": list(prompt),
            },
            False,
        )

    def _is_changed_fn(
        self, prompt: dict[str, Any], catalog: NodeCatalog
    ) -> Callable[[str], Hashable]:
        def is_changed(nid: str) -> Hashable:
            node = prompt[nid]
            impl = implementation(catalog[node["class_type"]], self.packs)
            if impl.is_changed is None:
                return False
            try:
                value: Hashable = impl.is_changed(self.layout, node.get("inputs", {}), nid)
                return value
            except Exception as exc:  # noqa: BLE001 - ComfyUI logs any failure and re-runs
                self.book.line(f"WARNING: {exc}")
                return Uncacheable()

        return is_changed

    @staticmethod
    def _includes_id_fn(catalog: NodeCatalog) -> Callable[[str], bool]:
        def includes_id(class_type: str) -> bool:
            hidden = catalog[class_type].raw.get("input", {}).get("hidden") or {}
            return "UNIQUE_ID" in hidden.values()

        return includes_id


def _cycle_details(elist: ExecutionList) -> dict[str, Any]:
    blamed = next(iter(elist.pending))
    return {
        "node_id": blamed,
        "exception_message": "Dependency cycle detected",
        "exception_type": "graph.DependencyCycleError",
        "traceback": [],
        "current_inputs": [],
    }
