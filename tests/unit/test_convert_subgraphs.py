"""Subgraphs: nested instances, promoted widgets, links across subgraph boundaries."""

from __future__ import annotations

from typing import Any

import pytest
from test_convert_builder import UiBuilder

from comfyfleet.comfy.workflow.convert import ui_to_api
from comfyfleet.errors import ConversionError
from comfyfleet.models.nodes import NodeCatalog

COND = ("CONDITIONING", "CONDITIONING")


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def prompt_subgraphs(ui: UiBuilder, *, inner_mode: int = 0) -> None:
    """T: a CLIPTextEncode whose clip and text come from outside. S: an instance of T plus a
    latent node; S promotes T's text as its own 'prompt' input."""
    inner = UiBuilder(objects=True)
    inner.node(
        3,
        "CLIPTextEncode",
        widgets=["deep default"],
        mode=inner_mode,
        inputs=[("clip", "CLIP"), ("text", "STRING", "text")],
        outputs=[COND],
    )
    inner.link(-10, 0, 3, "clip")
    inner.link(-10, 1, 3, "text")
    inner.link(3, 0, -20, "0")
    middle = UiBuilder(objects=True)
    middle.node(
        5,
        "t-def",
        widgets=["middle default"],
        inputs=[("clip", "CLIP"), ("text", "STRING", "text")],
        outputs=[COND],
    )
    middle.node(6, "EmptyLatentImage", widgets=[640, 480, 1], outputs=[("LATENT", "LATENT")])
    middle.link(-10, 0, 5, "clip")
    middle.link(-10, 1, 5, "text")
    middle.link(5, 0, -20, "0")
    middle.link(6, 0, -20, "1")
    # Definitions listed outer first: the converter must not depend on their order.
    ui.subgraph(
        "s-def",
        "Prompt",
        middle,
        inputs=[("clip", "CLIP"), ("prompt", "STRING")],
        outputs=[COND, ("LATENT", "LATENT")],
    )
    ui.subgraph(
        "t-def", "Encode", inner, inputs=[("clip", "CLIP"), ("text", "STRING")], outputs=[COND]
    )


def root_graph(**kwargs: Any) -> UiBuilder:
    ui = UiBuilder()
    prompt_subgraphs(ui, **kwargs)
    ui.node(
        1,
        "CheckpointLoaderSimple",
        widgets=["m.safetensors"],
        outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
    )
    ui.node(
        10,
        "s-def",
        widgets=["hello"],
        title="My prompt",
        inputs=[("clip", "CLIP"), ("prompt", "STRING", "prompt")],
        outputs=[COND, ("LATENT", "LATENT")],
    )
    ui.node(
        20,
        "KSampler",
        widgets=[1, "fixed", 20, 8, "euler", "normal", 1],
        inputs=[
            ("model", "MODEL"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
        ],
    )
    ui.link(1, 1, 10, "clip")
    ui.link(1, 0, 20, "model")
    ui.link(10, 0, 20, "positive")
    ui.link(10, 0, 20, "negative")
    ui.link(10, 1, 20, "latent_image")
    return ui


def test_nested_subgraph_nodes_get_path_ids_and_promoted_values(catalog: NodeCatalog) -> None:
    out = ui_to_api(root_graph().build(), catalog)
    assert list(out) == ["1", "20", "10:5:3", "10:6"]
    assert out["10:5:3"] == {
        "inputs": {"text": "hello", "clip": ["1", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    }
    assert out["10:6"]["inputs"] == {"width": 640, "height": 480, "batch_size": 1}
    sampler = out["20"]["inputs"]
    assert sampler["positive"] == sampler["negative"] == ["10:5:3", 0]
    assert sampler["latent_image"] == ["10:6", 0]


def test_linked_subgraph_input_wins_over_its_promoted_widget(catalog: NodeCatalog) -> None:
    ui = root_graph()
    ui.node(30, "PrimitiveString", widgets=["from outside"], outputs=[("STRING", "STRING")])
    ui.link(30, 0, 10, "prompt")
    out = ui_to_api(ui.build(), catalog)
    assert out["10:5:3"]["inputs"]["text"] == ["30", 0]
    assert out["30"]["inputs"] == {"value": "from outside"}


def test_muted_inner_node_drops_what_depends_on_it(catalog: NodeCatalog) -> None:
    out = ui_to_api(root_graph(inner_mode=2).build(), catalog)
    assert "10:5:3" not in out
    assert "positive" not in out["20"]["inputs"] and "negative" not in out["20"]["inputs"]


def test_bypassed_inner_node_passes_its_input_out_of_the_subgraph(catalog: NodeCatalog) -> None:
    ui = root_graph()
    middle = ui.subgraphs[0]
    middle["nodes"][1]["mode"] = 4  # EmptyLatentImage bypassed: no LATENT input to pass
    out = ui_to_api(ui.build(), catalog)
    assert "10:6" not in out
    assert "latent_image" not in out["20"]["inputs"]


def test_unconnected_subgraph_output_and_self_containing_subgraph(catalog: NodeCatalog) -> None:
    ui = root_graph()
    ui.subgraphs[0]["outputs"][1]["linkIds"] = []
    out = ui_to_api(ui.build(), catalog)
    assert "latent_image" not in out["20"]["inputs"]
    looping = root_graph()
    looping.subgraphs[1]["nodes"][0]["type"] = "s-def"
    with pytest.raises(ConversionError, match="contains itself"):
        ui_to_api(looping.build(), catalog)
