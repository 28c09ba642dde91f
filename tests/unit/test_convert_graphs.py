"""UI → API conversion of hand-built graphs: bypass, mute, reroutes, primitives, sockets."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

import pytest
from test_convert_builder import UiBuilder

from comfyfleet.comfy.workflow.convert import ui_to_api
from comfyfleet.errors import ConversionError, WorkflowFormatError
from comfyfleet.models.nodes import NodeCatalog

MODEL, CLIP, VAE = ("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")  # outputs
IN_MODEL, IN_CLIP, IN_VAE = ("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE")  # inputs
SAMPLER_WIDGETS = [5, "fixed", 20, 8, "euler", "normal", 1]


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


def base_graph(sampler_mode: int = 0) -> UiBuilder:
    """Checkpoint → two prompts → KSampler ← empty latent."""
    ui = UiBuilder()
    ui.node(1, "CheckpointLoaderSimple", widgets=["m.safetensors"], outputs=[MODEL, CLIP, VAE])
    for node_id, text in ((2, "a cat"), (3, "blurry")):
        ui.node(
            node_id,
            "CLIPTextEncode",
            widgets=[text],
            inputs=[IN_CLIP],
            outputs=[("CONDITIONING", "CONDITIONING")],
        )
    ui.node(4, "EmptyLatentImage", widgets=[512, 512, 1], outputs=[("LATENT", "LATENT")])
    ui.node(
        5,
        "KSampler",
        widgets=list(SAMPLER_WIDGETS),
        mode=sampler_mode,
        inputs=[
            IN_MODEL,
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
        ],
        outputs=[("LATENT", "LATENT")],
    )
    ui.link(2, 0, 5, "positive")
    ui.link(3, 0, 5, "negative")
    ui.link(4, 0, 5, "latent_image")
    return ui


def test_widgets_come_first_then_links_with_titles_from_the_catalog(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.link(1, 0, 5, "model")
    ui.link(1, 1, 2, "clip")
    ui.link(1, 1, 3, "clip")
    out = ui_to_api(ui.build(), catalog)
    assert list(out["5"]["inputs"]) == [
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
        "model",
        "positive",
        "negative",
        "latent_image",
    ]
    assert out["5"]["inputs"]["seed"] == 5
    assert out["5"]["inputs"]["model"] == ["1", 0]
    assert out["2"] == {
        "inputs": {"text": "a cat", "clip": ["1", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    }


def test_bypassed_chain_passes_inputs_through_by_type(catalog: NodeCatalog) -> None:
    ui = base_graph()
    lora_io = {"inputs": [IN_MODEL, IN_CLIP], "outputs": [MODEL, CLIP]}
    ui.node(6, "LoraLoader", widgets=["a.safetensors", 1, 1], mode=4, **lora_io)
    ui.node(
        7,
        "LoraLoaderModelOnly",
        widgets=["b.safetensors", 1],
        mode=4,
        inputs=[IN_MODEL],
        outputs=[MODEL],
    )
    ui.link(1, 0, 6, "model")
    ui.link(1, 1, 6, "clip")
    ui.link(6, 0, 7, "model")
    ui.link(7, 0, 5, "model")
    ui.link(6, 1, 2, "clip")
    ui.link(6, 1, 3, "clip")
    out = ui_to_api(ui.build(), catalog)
    assert "6" not in out and "7" not in out
    assert out["5"]["inputs"]["model"] == ["1", 0]
    assert out["2"]["inputs"]["clip"] == ["1", 1]


def test_bypass_prefers_the_same_slot_and_drops_what_cannot_match(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.link(1, 0, 5, "model")
    ui.node(
        8,
        "ControlNetApplyAdvanced",
        widgets=[1, 0, 1],
        mode=4,
        inputs=[
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("control_net", "CONTROL_NET"),
            ("image", "IMAGE"),
            ("vae", "VAE"),
        ],
        outputs=[("positive", "CONDITIONING"), ("negative", "CONDITIONING")],
    )
    data = ui.build()
    data["links"] = [link for link in data["links"] if link[3] != 5 or link[4] == 0]
    for slot in data["nodes"][4]["inputs"][1:3]:
        slot["link"] = None
    rebuilt = UiBuilder()
    rebuilt.nodes, rebuilt.links = data["nodes"], data["links"]
    rebuilt.link(2, 0, 8, "positive")
    rebuilt.link(3, 0, 8, "negative")
    rebuilt.link(8, 0, 5, "positive")
    rebuilt.link(8, 1, 5, "negative")
    rebuilt.node(
        9, "VAEDecode", mode=4, inputs=[("samples", "LATENT"), IN_VAE], outputs=[("IMAGE", "IMAGE")]
    )
    rebuilt.node(10, "SaveImage", widgets=["out"], inputs=[("images", "IMAGE")])
    rebuilt.link(5, 0, 9, "samples")
    rebuilt.link(9, 0, 10, "images")
    out = ui_to_api(rebuilt.build(), catalog)
    assert out["5"]["inputs"]["positive"] == ["2", 0]
    assert out["5"]["inputs"]["negative"] == ["3", 0]  # slot 1 of the bypassed node, not 0
    assert out["10"]["inputs"] == {"filename_prefix": "out"}  # no IMAGE input to pass through


def test_muted_node_disappears_with_the_links_to_it(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.link(1, 0, 5, "model")
    ui.link(1, 1, 2, "clip")
    ui.link(1, 1, 3, "clip")
    ui.nodes[1]["mode"] = 2  # node 2 (positive prompt) muted
    ui.node(6, "PrimitiveInt", widgets=[7, "fixed"], mode=2, outputs=[("INT", "INT")])
    ui.nodes[4]["inputs"].append(
        {"name": "steps", "type": "INT", "link": None, "widget": {"name": "steps"}}
    )
    ui.link(6, 0, 5, "steps")
    out = ui_to_api(ui.build(), catalog)
    assert "2" not in out and "6" not in out
    assert "positive" not in out["5"]["inputs"]
    # A widget fed by a muted node loses its value too: the link replaced it, then went away.
    assert "steps" not in out["5"]["inputs"]
    assert out["5"]["inputs"]["negative"] == ["3", 0]


def test_muted_sampler_keeps_its_inputs_alive(catalog: NodeCatalog) -> None:
    ui = base_graph(sampler_mode=2)
    ui.link(1, 1, 2, "clip")
    out = ui_to_api(ui.build(), catalog)
    assert "5" not in out
    assert out["2"]["inputs"]["clip"] == ["1", 1]


def test_reroute_chains_resolve_to_the_real_origin(catalog: NodeCatalog) -> None:
    ui = base_graph()
    for node_id in (20, 21, 22):
        ui.node(node_id, "Reroute", inputs=[("", "*")], outputs=[("", "MODEL")])
    ui.link(1, 0, 20, "")
    ui.link(20, 0, 21, "")
    ui.link(21, 0, 5, "model")
    ui.link(22, 0, 2, "clip")  # a reroute fed by nothing
    out = ui_to_api(ui.build(), catalog)
    assert out["5"]["inputs"]["model"] == ["1", 0]
    assert "clip" not in out["2"]["inputs"]
    assert not {"20", "21", "22"} & set(out)


def test_primitive_pushes_rounded_and_clamped_values_into_every_target(
    catalog: NodeCatalog,
) -> None:
    ui = base_graph()
    ui.node(
        11,
        "KSampler",
        widgets=list(SAMPLER_WIDGETS),
        inputs=[
            IN_MODEL,
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
        ],
    )
    for sampler in (5, 11):
        node = next(n for n in ui.nodes if n["id"] == sampler)
        node["inputs"] += [
            {"name": "steps", "type": "INT", "link": None, "widget": {"name": "steps"}},
            {"name": "cfg", "type": "FLOAT", "link": None, "widget": {"name": "cfg"}},
        ]
    ui.node(30, "PrimitiveNode", widgets=[20000, "fixed"], title="steps", outputs=[("INT", "INT")])
    ui.node(31, "PrimitiveNode", widgets=[7.123456, "fixed"], outputs=[("FLOAT", "FLOAT")])
    for sampler in (5, 11):
        ui.link(30, 0, sampler, "steps")
        ui.link(31, 0, sampler, "cfg")
    out = ui_to_api(ui.build(), catalog)
    for sampler in ("5", "11"):
        assert out[sampler]["inputs"]["steps"] == 10000  # clamped to KSampler's max
        # Merging the two cfg specs multiplies their float steps (lcm of 0.1 and 0.1 computed in
        # doubles), so the shared step has no decimals left and the value rounds to 7.
        assert out[sampler]["inputs"]["cfg"] == 7
    assert "30" not in out and "31" not in out


def test_primitive_float_rounds_to_the_precision_of_its_target_step(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.nodes[4]["inputs"].append(
        {"name": "cfg", "type": "FLOAT", "link": None, "widget": {"name": "cfg"}}
    )
    ui.node(31, "PrimitiveNode", widgets=[7.163456, "fixed"], outputs=[("FLOAT", "FLOAT")])
    ui.link(31, 0, 5, "cfg")
    out = ui_to_api(ui.build(), catalog)
    assert out["5"]["inputs"]["cfg"] == 7.2  # rounded to 0.01, then shown with step 0.1


def test_primitive_text_follows_widget_replace_property(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.nodes[1]["inputs"].append(
        {"name": "text", "type": "STRING", "link": None, "widget": {"name": "text"}}
    )
    ui.node(
        40,
        "PrimitiveNode",
        widgets=["seed %KSampler.seed%"],
        properties={"Run widget replace on values": True},
        outputs=[("STRING", "STRING")],
    )
    ui.link(40, 0, 2, "text")
    out = ui_to_api(ui.build(), catalog)
    assert out["2"]["inputs"]["text"] == "seed 5"


def test_converted_widget_socket_takes_the_link_in_the_widget_position(
    catalog: NodeCatalog,
) -> None:
    ui = base_graph()
    ui.node(12, "PrimitiveInt", widgets=[99, "fixed"], outputs=[("INT", "INT")])
    ui.nodes[4]["inputs"].append(
        {"name": "seed", "type": "INT", "link": None, "widget": {"name": "seed"}}
    )
    ui.link(12, 0, 5, "seed")
    out = ui_to_api(ui.build(), catalog)
    assert next(iter(out["5"]["inputs"])) == "seed"
    assert out["5"]["inputs"]["seed"] == ["12", 0]
    assert out["12"]["inputs"] == {"value": 99}


def test_old_boolean_control_value_and_missing_values_use_defaults(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.nodes[4]["widgets_values"] = [42, True, 30, 6.5, "sample_dpmpp_2m", "karras", 0.5]
    ui.node(13, "SaveImage", inputs=[("images", "IMAGE")])
    out = ui_to_api(ui.build(), catalog)
    assert out["5"]["inputs"]["seed"] == 42
    assert out["5"]["inputs"]["steps"] == 30
    assert out["5"]["inputs"]["sampler_name"] == "dpmpp_2m"  # old "sample_" prefix dropped
    assert out["13"]["inputs"] == {"filename_prefix": "ComfyUI"}


def test_array_values_are_wrapped_and_numbers_print_like_javascript(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.nodes[4]["widgets_values"] = [5, "fixed", 20.0, 8, ["euler", "heun"], "normal", 1.0]
    out = ui_to_api(ui.build(), catalog)
    inputs = out["5"]["inputs"]
    assert inputs["sampler_name"] == {"__value__": ["euler", "heun"]}
    assert json.dumps(inputs["steps"]) == "20" and json.dumps(inputs["denoise"]) == "1"


def test_node_keys_follow_javascript_object_order(catalog: NodeCatalog) -> None:
    ui = UiBuilder()
    for node_id in (10, 2, 33):
        ui.node(node_id, "EmptyLatentImage", widgets=[512, 512, 1])
    assert list(ui_to_api(ui.build(), catalog)) == ["2", "10", "33"]


def test_dynamic_prompts_and_filename_replacements(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.nodes[1]["widgets_values"] = ["a {red|green|blue} cat // comment\n/* x */ \\{kept\\}"]
    ui.node(
        13,
        "SaveImage",
        widgets=["%date:yyyy-MM-dd%/%KSampler.seed%_%nope%"],
        inputs=[("images", "IMAGE")],
    )
    now = datetime(2025, 3, 7, 9, 5, 1)
    first = ui_to_api(ui.build(), catalog, rng=random.Random(1), now=now)
    again = ui_to_api(ui.build(), catalog, rng=random.Random(1), now=now)
    text = first["2"]["inputs"]["text"]
    assert text == again["2"]["inputs"]["text"]
    assert text in {"a red cat \n {kept}", "a green cat \n {kept}", "a blue cat \n {kept}"}
    seen = {
        ui_to_api(ui.build(), catalog, rng=random.Random(s))["2"]["inputs"]["text"]
        for s in range(30)
    }
    assert len(seen) == 3
    assert first["13"]["inputs"]["filename_prefix"] == "2025-03-07/5_%nope%"


def test_upload_pickers_send_the_file_name_and_outputs_get_annotated(
    catalog: NodeCatalog,
) -> None:
    ui = UiBuilder()
    ui.node(1, "LoadImage", widgets=["photo.png", "image"])
    ui.node(2, "LoadImageOutput", widgets=["render.png", "refresh", "image"])
    ui.node(3, "LoadAudio", widgets=["voice.wav", None, ""])
    ui.node(4, "PreviewAny", inputs=[("source", "*")])
    out = ui_to_api(ui.build(), catalog)
    assert out["1"]["inputs"] == {"image": "photo.png"}
    assert out["2"]["inputs"] == {"image": "render.png [output]", "refresh": "refresh"}
    assert out["3"]["inputs"] == {"audio": "voice.wav", "audioUI": ""}
    assert out["4"]["inputs"] == {"preview": ""}


def test_unknown_node_types_are_all_named(catalog: NodeCatalog) -> None:
    ui = base_graph()
    ui.node(50, "VHS_VideoCombine", title="Combine")
    ui.node(51, "VHS_VideoCombine")
    ui.node(52, "SomethingElse")
    with pytest.raises(ConversionError) as caught:
        ui_to_api(ui.build(), catalog)
    text = str(caught.value)
    assert "VHS_VideoCombine" in text and "SomethingElse" in text
    assert "node 50 (VHS_VideoCombine) 'Combine'" in text and "node 51" in text
    assert "comfyfleet workflow deps" in text


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["links"].append([900, 1, 0, 77, 0, "MODEL"]), "links to missing node 77"),
        (lambda d: d["nodes"][4]["inputs"][0].update(link=555), "uses link 555"),
    ],
)
def test_broken_links_are_refused(catalog: NodeCatalog, mutate: Any, message: str) -> None:
    data = base_graph().build()
    mutate(data)
    with pytest.raises(WorkflowFormatError) as caught:
        ui_to_api(data, catalog, source="broken.json")
    assert message in str(caught.value) and "broken.json" in str(caught.value)


def test_old_dummy_values_of_socket_only_inputs_are_dropped() -> None:
    demo = {
        "input": {"required": {"a": ["INT", {"forceInput": True}], "b": ["INT", {"default": 3}]}},
        "input_order": {"required": ["a", "b"]},
        "output": ["INT"],
        "output_name": ["INT"],
        "name": "Demo",
        "display_name": "Demo node",
    }
    ui = UiBuilder()
    ui.node(1, "Demo", widgets=[1, 2], inputs=[("a", "INT")])  # saved before frontend 1.16
    ui.node(2, "Demo", widgets=[7], inputs=[("a", "INT")])
    out = ui_to_api(ui.build(), NodeCatalog({"Demo": demo}))
    assert out["1"] == {"inputs": {"b": 2}, "class_type": "Demo", "_meta": {"title": "Demo node"}}
    assert out["2"]["inputs"] == {"b": 7}
