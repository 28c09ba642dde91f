"""Legacy group nodes (`extra.groupNodes`): expansion into `<group id>:<index>` nodes."""

from __future__ import annotations

from typing import Any

import pytest
from test_convert_builder import UiBuilder

from comfyfleet.comfy.workflow.convert import ui_to_api
from comfyfleet.comfy.workflow.convert_groupnodes import build_group_configs
from comfyfleet.errors import ConversionError
from comfyfleet.models.nodes import NodeCatalog

COND = ("CONDITIONING", "CONDITIONING")
SAMPLER_INPUTS = [
    ("model", "MODEL"),
    ("positive", "CONDITIONING"),
    ("negative", "CONDITIONING"),
    ("latent_image", "LATENT"),
]


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def saved(
    node_id: int,
    node_type: str,
    values: list[Any],
    inputs: list[dict[str, Any]],
    outputs: list[tuple[str, str, list[int]]],
) -> dict[str, Any]:
    """An inner node as the editor stored it when the group was made."""
    return {
        "id": node_id,
        "type": node_type,
        "pos": [0, 0],
        "size": [100, 100],
        "flags": {},
        "order": 0,
        "mode": 0,
        "inputs": inputs,
        "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
        "properties": {},
        "widgets_values": values,
    }


LOADER_AND_PROMPT = {
    "nodes": [
        saved(
            100,
            "CheckpointLoaderSimple",
            ["orig.safetensors"],
            [],
            [("MODEL", "MODEL", []), ("CLIP", "CLIP", [1]), ("VAE", "VAE", [])],
        ),
        saved(
            101,
            "CLIPTextEncode",
            ["orig text"],
            [{"name": "clip", "type": "CLIP", "link": 1}],
            [("CONDITIONING", "CONDITIONING", [])],
        ),
    ],
    "links": [[0, 1, 1, 0, 100, "CLIP"]],
    "external": [],
}
TWO_PROMPTS = {
    "nodes": [
        saved(
            200,
            "CLIPTextEncode",
            ["a"],
            [{"name": "clip", "type": "CLIP", "link": 5}],
            [("CONDITIONING", "CONDITIONING", [])],
        ),
        saved(
            201,
            "CLIPTextEncode",
            ["b"],
            [{"name": "clip", "type": "CLIP", "link": 6}],
            [("CONDITIONING", "CONDITIONING", [])],
        ),
    ],
    "links": [[None, 1, 0, 0, 9, "CLIP"], [None, 1, 1, 0, 9, "CLIP"]],
    "external": [],
}


def test_group_definition_mirrors_the_editor(catalog: NodeCatalog) -> None:
    configs = build_group_configs({"Pair": LOADER_AND_PROMPT, "Two": TWO_PROMPTS}, catalog)
    pair = configs["workflow>Pair"]
    assert list(pair.required) == ["ckpt_name", "text"]
    assert pair.outputs == ["MODEL", "VAE", "CONDITIONING"]  # CLIP feeds the prompt inside
    two = configs["workflow>Two"]
    assert list(two.required) == ["text", "clip", "CLIPTextEncode text", "CLIPTextEncode clip"]
    assert two.output_names == ["CONDITIONING", "CLIPTextEncode CONDITIONING"]
    assert two.old_to_new_input == {0: {0: 0}, 1: {0: 1}}


def test_group_node_expands_with_internal_links_and_its_widget_values(
    catalog: NodeCatalog,
) -> None:
    ui = UiBuilder()
    ui.extra = {"groupNodes": {"Pair": LOADER_AND_PROMPT}}
    ui.node(
        7,
        "workflow/Pair",
        widgets=["model.safetensors", "a {cat|cat}"],
        outputs=[("MODEL", "MODEL"), ("VAE", "VAE"), COND],
    )
    ui.node(4, "EmptyLatentImage", widgets=[512, 512, 1], outputs=[("LATENT", "LATENT")])
    ui.node(
        20, "KSampler", widgets=[3, "fixed", 20, 8, "euler", "normal", 1], inputs=SAMPLER_INPUTS
    )
    ui.link(7, 0, 20, "model")
    ui.link(7, 2, 20, "positive")
    ui.link(7, 2, 20, "negative")
    ui.link(4, 0, 20, "latent_image")
    out = ui_to_api(ui.build(), catalog)
    assert list(out) == ["4", "20", "7:0", "7:1"]
    assert out["7:0"] == {
        "inputs": {"ckpt_name": "model.safetensors"},
        "class_type": "CheckpointLoaderSimple",
        "_meta": {"title": "Load Checkpoint"},
    }
    assert out["7:1"]["inputs"] == {"text": "a cat", "clip": ["7:0", 1]}
    assert out["20"]["inputs"]["model"] == ["7:0", 0]
    assert out["20"]["inputs"]["positive"] == ["7:1", 0]


def test_group_inputs_come_from_outside_nodes(catalog: NodeCatalog) -> None:
    ui = UiBuilder()
    ui.extra = {"groupNodes": {"Two": TWO_PROMPTS}}
    ui.node(
        1,
        "CheckpointLoaderSimple",
        widgets=["m.safetensors"],
        outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
    )
    ui.node(
        8,
        "workflow>Two",
        widgets=["sunny", "rain"],
        inputs=[("clip", "CLIP"), ("CLIPTextEncode clip", "CLIP")],
        outputs=[COND, ("CLIPTextEncode CONDITIONING", "CONDITIONING")],
    )
    ui.node(
        20, "KSampler", widgets=[3, "fixed", 20, 8, "euler", "normal", 1], inputs=SAMPLER_INPUTS
    )
    ui.link(1, 1, 8, "clip")
    ui.link(1, 1, 8, "CLIPTextEncode clip")
    ui.link(1, 0, 20, "model")
    ui.link(8, 0, 20, "positive")
    ui.link(8, 1, 20, "negative")
    out = ui_to_api(ui.build(), catalog)
    assert out["8:0"]["inputs"] == {"text": "sunny", "clip": ["1", 1]}
    assert out["8:1"]["inputs"] == {"text": "rain", "clip": ["1", 1]}
    assert out["20"]["inputs"]["negative"] == ["8:1", 0]


def test_group_with_unknown_inner_type_is_an_unknown_node(catalog: NodeCatalog) -> None:
    broken = {**TWO_PROMPTS, "nodes": [{**TWO_PROMPTS["nodes"][0], "type": "MissingNode"}]}
    ui = UiBuilder()
    ui.extra = {"groupNodes": {"Bad": broken}}
    ui.node(8, "workflow>Bad")
    with pytest.raises(ConversionError, match=r"workflow>Bad.*needing MissingNode"):
        ui_to_api(ui.build(), catalog)
