"""A small builder for hand-made UI-format workflows, used by the conversion tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from comfyfleet.comfy.workflow.load import load_workflow


class UiBuilder:
    """Builds a version 0.4 UI workflow (or, with `objects=True`, a subgraph body)."""

    def __init__(self, *, objects: bool = False) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.links: list[Any] = []
        self.objects = objects
        self._next_link = 100
        self.extra: dict[str, Any] = {}
        self.subgraphs: list[dict[str, Any]] = []

    def node(
        self,
        node_id: int,
        node_type: str,
        *,
        widgets: list[Any] | None = None,
        inputs: Sequence[tuple[str, ...]] = (),
        outputs: Sequence[tuple[str, str]] = (),
        mode: int = 0,
        title: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A node; an input given as (name, type, widget) is a widget socket."""
        data: dict[str, Any] = {
            "id": node_id,
            "type": node_type,
            "pos": [0, 0],
            "size": [100, 100],
            "flags": {},
            "order": len(self.nodes),
            "mode": mode,
            "inputs": [
                {"name": i[0], "type": i[1], "link": None}
                | ({"widget": {"name": i[2]}} if len(i) > 2 else {})
                for i in inputs
            ],
            "outputs": [{"name": o[0], "type": o[1], "links": []} for o in outputs],
            "properties": properties or {},
        }
        if widgets is not None:
            data["widgets_values"] = widgets
        if title is not None:
            data["title"] = title
        self.nodes.append(data)
        return data

    def _find(self, node_id: int) -> dict[str, Any]:
        return next(n for n in self.nodes if n["id"] == node_id)

    def link(self, origin: int, origin_slot: int, target: int, target_input: str) -> int:
        """Wire `origin` output `origin_slot` to the input named `target_input` of `target`."""
        self._next_link += 1
        link_id = self._next_link
        target_node = self._find(target) if target != -20 else None
        slot = 0
        if target_node is not None:
            names = [i["name"] for i in target_node["inputs"]]
            slot = names.index(target_input)
            target_node["inputs"][slot]["link"] = link_id
        else:
            slot = int(target_input)
        kind = "*"
        if origin != -10:
            out = self._find(origin)["outputs"][origin_slot]
            out["links"].append(link_id)
            kind = out["type"]
        if self.objects:
            self.links.append(
                {
                    "id": link_id,
                    "origin_id": origin,
                    "origin_slot": origin_slot,
                    "target_id": target,
                    "target_slot": slot,
                    "type": kind,
                }
            )
        else:
            self.links.append([link_id, origin, origin_slot, target, slot, kind])
        return link_id

    def build(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "last_node_id": max((n["id"] for n in self.nodes), default=0),
            "last_link_id": self._next_link,
            "nodes": self.nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": self.extra,
            "version": 0.4,
        }
        if self.subgraphs:
            data["definitions"] = {"subgraphs": self.subgraphs}
        return data

    def subgraph(
        self,
        sub_id: str,
        name: str,
        body: UiBuilder,
        inputs: list[tuple[str, str]],
        outputs: list[tuple[str, str]],
    ) -> None:
        """Add a subgraph definition whose IO slots collect the links of `body` to -10/-20."""

        def io(slots: list[tuple[str, str]], end: str) -> list[dict[str, Any]]:
            result = []
            for index, (slot_name, slot_type) in enumerate(slots):
                ids = [
                    link["id"]
                    for link in body.links
                    if link[f"{end}_id"] == (-10 if end == "origin" else -20)
                    and link[f"{end}_slot"] == index
                ]
                result.append(
                    {
                        "id": f"{sub_id}-{end}-{index}",
                        "name": slot_name,
                        "type": slot_type,
                        "linkIds": ids,
                    }
                )
            return result

        self.subgraphs.append(
            {
                "id": sub_id,
                "version": 1,
                "name": name,
                "inputNode": {"id": -10, "bounding": [0, 0, 10, 10]},
                "outputNode": {"id": -20, "bounding": [0, 0, 10, 10]},
                "inputs": io(inputs, "origin"),
                "outputs": io(outputs, "target"),
                "widgets": [],
                "nodes": body.nodes,
                "links": body.links,
            }
        )


def test_builder_produces_a_loadable_ui_workflow() -> None:
    ui = UiBuilder()
    ui.node(1, "EmptyLatentImage", widgets=[512, 512, 1], outputs=[("LATENT", "LATENT")])
    ui.node(2, "VAEDecode", inputs=[("samples", "LATENT"), ("vae", "VAE")])
    link = ui.link(1, 0, 2, "samples")
    loaded = load_workflow(ui.build())
    assert loaded.format == "ui"
    assert loaded.ui is not None
    assert loaded.ui["links"] == [[link, 1, 0, 2, 0, "LATENT"]]
    assert loaded.ui["nodes"][0]["outputs"][0]["links"] == [link]


def test_builder_subgraph_io_collects_boundary_links() -> None:
    body = UiBuilder(objects=True)
    body.node(3, "CLIPTextEncode", inputs=[("clip", "CLIP")], outputs=[("C", "CONDITIONING")])
    into = body.link(-10, 0, 3, "clip")
    out = body.link(3, 0, -20, "0")
    ui = UiBuilder()
    ui.subgraph("sub", "S", body, inputs=[("clip", "CLIP")], outputs=[("C", "CONDITIONING")])
    definition = ui.build()["definitions"]["subgraphs"][0]
    assert definition["inputs"][0]["linkIds"] == [into]
    assert definition["outputs"][0]["linkIds"] == [out]
