"""Running one node of a prompt: inputs, knob effects, the node itself, its events.

For a node not in the cache: progress_state(running), `executing`, the interrupt check ComfyUI
does before calling a node, the node's simulated time and work, then `executed` (when it has UI
output) and progress_state(finished). A cached output node only re-sends `executed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import traceback
from collections.abc import Hashable
from typing import Any, Protocol

from comfyfleet.graph.model_folders import model_inputs_of
from comfyfleet.models.nodes import NodeCatalog, NodeDef
from comfyfleet.sandbox.comfy import hub as wire
from comfyfleet.sandbox.comfy.graph_run import OutputCaches, is_link
from comfyfleet.sandbox.comfy.hub import Hub, Preview
from comfyfleet.sandbox.comfy.knobs import Knobs
from comfyfleet.sandbox.comfy.layout import Layout
from comfyfleet.sandbox.comfy.nodes_base import (
    NodeContext,
    NodeFailure,
    NodeImpl,
    NodeResult,
    exception_type_name,
    execution_frames,
)
from comfyfleet.sandbox.comfy.nodes_image import registry as image_nodes
from comfyfleet.sandbox.comfy.nodes_standin import (
    LOADER_DURATION,
    VAE_DURATION,
    load_models,
    run_standin,
)
from comfyfleet.sandbox.comfy.nodes_standin import registry as standin_nodes
from comfyfleet.sandbox.comfy.packs import PackSet
from comfyfleet.sandbox.comfy.values import format_value
from comfyfleet.util.clock import Clock


class RunHost(Protocol):
    """What a node run needs from its executor."""

    hub: Hub
    layout: Layout
    knobs: Knobs
    clock: Clock
    caches: OutputCaches
    knob_event: asyncio.Event
    preview_method: str
    packs: PackSet

    def check_interrupt(self) -> None: ...


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


def implementation(definition: NodeDef, packs: PackSet) -> NodeImpl:
    """How a node class runs: a custom node pack's own code, real image code, a timed
    stand-in, or a loader."""
    impl = (
        packs.implementation(definition.name)
        or image_nodes.impls.get(definition.name)
        or standin_nodes.impls.get(definition.name)
    )
    if impl is not None:
        return impl
    if any(folder for _, folder in model_inputs_of(definition)):
        return NodeImpl(load_models, LOADER_DURATION)
    if definition.name.startswith("VAEDecode"):
        return NodeImpl(run_standin, VAE_DURATION)
    return NodeImpl(run_standin)


class Progress:
    """ComfyUI's ProgressRegistry with its WebUI handler: a full snapshot on every change."""

    def __init__(self, hub: Hub, prompt_id: str, client_id: str | None) -> None:
        self.hub, self.prompt_id, self.client_id = hub, prompt_id, client_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        return self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})

    def _send(self) -> None:
        nodes = {
            nid: {
                "value": st["value"],
                "max": st["max"],
                "state": st["state"],
                "node_id": nid,
                "prompt_id": self.prompt_id,
                "display_node_id": nid,
                "parent_node_id": None,
                "real_node_id": nid,
            }
            for nid, st in self.nodes.items()
            if st["state"] != "pending"
        }
        self.hub.send_sync(
            "progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.client_id
        )

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._send()

    def update(self, node_id: str, value: int, total: int, preview: Preview | None) -> None:
        self._entry(node_id).update(state="running", value=value, max=total)
        self._send()
        if preview is not None and self.hub.supports_metadata(self.client_id):
            meta = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            self.hub.send_sync(wire.PREVIEW_IMAGE_WITH_METADATA, (preview, meta), self.client_id)

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._send()


class RunFailure(Exception):
    """A node ended the prompt: ComfyUI's error details, or an interrupt."""

    def __init__(self, details: dict[str, Any], interrupted: bool) -> None:
        super().__init__(details.get("exception_message", "interrupted"))
        self.details = details
        self.interrupted = interrupted


class NodeRun:
    """The state of one prompt's execution, node by node."""

    def __init__(
        self,
        ex: RunHost,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        client_id: str | None,
        catalog: NodeCatalog,
        sigs: dict[str, Hashable],
        progress: Progress,
    ):
        self.ex, self.prompt, self.prompt_id, self.extra_data = ex, prompt, prompt_id, extra_data
        self.client_id, self.catalog, self.sigs, self.progress = client_id, catalog, sigs, progress
        self.executed: list[str] = []

    def _send_client(self, event: str, data: dict[str, Any]) -> None:
        if self.client_id is not None:
            self.ex.hub.send_sync(event, data, self.client_id)

    async def node(self, node_id: str) -> None:
        ex, caches = self.ex, self.ex.caches
        node = self.prompt[node_id]
        class_type = node["class_type"]
        sig = self.sigs[node_id]
        if sig in caches.outputs:
            ui = caches.ui.get(sig) or {}
            self._send_client(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": ui.get("output"),
                    "prompt_id": self.prompt_id,
                },
            )
            self.progress.finish(node_id)
            return
        self.progress.start(node_id)
        definition = self.catalog[class_type]
        inputs = self._inputs(node_id, node, definition)
        if self.client_id is not None:
            ex.hub.last_node_id = node_id
        self._send_client(
            "executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id}
        )
        try:
            ex.check_interrupt()
            result = await self._run(node_id, class_type, definition, inputs)
        except Interrupted:
            raise RunFailure({"node_id": node_id}, interrupted=True) from None
        except NodeFailure as failure:
            raise RunFailure(
                self._details(
                    node_id, inputs, failure.exception_type, failure.message + "\n", failure.frames
                ),
                False,
            ) from None
        except Exception as exc:  # noqa: BLE001 - any failure of a node becomes execution_error
            name = exception_type_name(exc)
            frames = [*execution_frames(ex.layout.root), *traceback.format_tb(sys.exc_info()[2])]
            raise RunFailure(
                self._details(node_id, inputs, name, f"{exc}\n", frames), False
            ) from None
        if result.ui and ex.knobs.forged_output is not None:
            result = forge_names(result, ex.knobs.forged_output)
        if result.ui:
            caches.ui[sig] = {
                "meta": {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                },
                "output": result.ui,
            }
            self._send_client(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": result.ui,
                    "prompt_id": self.prompt_id,
                },
            )
        caches.outputs[sig] = result.outputs
        self.progress.finish(node_id)
        self.executed.append(node_id)

    def _details(
        self, node_id: str, inputs: dict[str, Any], exc_type: str, message: str, frames: list[str]
    ) -> dict[str, Any]:
        return {
            "node_id": node_id,
            "exception_message": message,
            "exception_type": exc_type,
            "traceback": frames,
            "current_inputs": {k: [format_value(v)] for k, v in inputs.items()},
        }

    def _inputs(self, node_id: str, node: dict[str, Any], definition: NodeDef) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in node.get("inputs", {}).items():
            spec = definition.inputs.get(name)
            if is_link(value):
                outputs = self.ex.caches.outputs.get(self.sigs.get(value[0]))
                slot = int(value[1])
                values[name] = (
                    outputs[slot] if outputs is not None and slot < len(outputs) else None
                )
            elif spec is not None and spec.section != "hidden":
                values[name] = value
        for spec in definition.section("hidden"):
            kind = spec.type
            if kind == "PROMPT":
                values[spec.name] = self.prompt
            elif kind == "EXTRA_PNGINFO":
                values[spec.name] = self.extra_data.get("extra_pnginfo")
            elif kind == "UNIQUE_ID":
                values[spec.name] = node_id
            elif kind in ("AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"):
                values[spec.name] = self.extra_data.get(kind.lower())
        return values

    async def _run(
        self, node_id: str, class_type: str, definition: NodeDef, inputs: dict[str, Any]
    ) -> NodeResult:
        ex = self.ex
        impl = implementation(definition, ex.packs)
        duration = ex.knobs.duration_for(class_type, impl.duration)
        while ex.knobs.is_hung(node_id, class_type):
            ex.knob_event.clear()
            await ex.knob_event.wait()
        crash = ex.knobs.crash_for(node_id, class_type)
        if crash is not None:
            await ex.clock.sleep(duration / 2)
            raise NodeFailure(crash.exception_type, crash.message, execution_frames(ex.layout.root))
        slow = ex.knobs.slow_for(node_id, class_type)
        ctx = NodeContext(
            node_id=node_id,
            class_type=class_type,
            prompt_id=self.prompt_id,
            definition=definition,
            layout=ex.layout,
            state=ex.caches.objects.setdefault((node_id, class_type), {}),
            duration=duration,
            slow=slow,
            preview_method=ex.knobs.preview_method or ex.preview_method,
            progress=lambda v, t, p: self._progress(node_id, v, t, p),
            send_text=lambda text: ex.hub.send_sync(
                wire.TEXT, wire.encode_text(node_id, text), self.client_id
            ),
            sleep=lambda s: self._sleep(s),
        )
        if slow is not None and not impl.stepped:
            steps = max(1, round(slow))
            for step in range(steps):
                await self._sleep(slow / steps)
                await self._progress(node_id, step + 1, steps, None)
        elif not impl.stepped:
            await self._sleep(duration)
        return await impl.fn(ctx, inputs)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await self.ex.clock.sleep(seconds)

    async def _progress(
        self, node_id: str, value: int, total: int, preview: Preview | None
    ) -> None:
        """ComfyUI's progress-bar hook: interrupt check, progress_state, progress, preview."""
        self.ex.check_interrupt()
        self.progress.update(node_id, value, total, preview)
        self.ex.hub.send_sync(
            "progress",
            {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id},
            self.client_id,
        )
        if preview is not None and not self.ex.hub.supports_metadata(self.client_id):
            self.ex.hub.send_sync(wire.UNENCODED_PREVIEW_IMAGE, preview, self.client_id)
        await asyncio.sleep(0)


def forge_names(result: NodeResult, forged: tuple[str, str]) -> NodeResult:
    """`result` with every output file reported under the forged subfolder and name."""
    subfolder, filename = forged
    ui: dict[str, Any] = {}
    for key, items in (result.ui or {}).items():
        if isinstance(items, list):
            items = [
                {**item, "subfolder": subfolder, "filename": filename}
                if isinstance(item, dict) and "filename" in item
                else item
                for item in items
            ]
        ui[key] = items
    return dataclasses.replace(result, ui=ui)
