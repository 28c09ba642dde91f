"""comfy.workflow.overrides: --set and --input against API-format prompts."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from comfyfleet.comfy.workflow.overrides import (
    InputFile,
    apply_overrides,
    apply_uploads,
    parse_inputs,
    resolve_node,
    split_spec,
)
from comfyfleet.errors import OverrideError
from comfyfleet.models.nodes import NodeCatalog


@pytest.fixture(scope="module")
def catalog(object_info_full: dict[str, Any]) -> NodeCatalog:
    return NodeCatalog(object_info_full)


@pytest.fixture
def sdxl(shared_dir: Path) -> dict[str, Any]:
    path = shared_dir / "fixtures" / "workflows-api" / "sdxl_simple_example.api.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize(
    ("spec", "parts"),
    [
        ("3.seed=5", ("3", "seed", "5")),
        (
            "KSampler (Advanced) - BASE.noise_seed=1",
            ("KSampler (Advanced) - BASE", "noise_seed", "1"),
        ),
        ("v1.5 loader.ckpt_name=a.safetensors", ("v1.5 loader", "ckpt_name", "a.safetensors")),
        ("106:87.unet_name=x", ("106:87", "unet_name", "x")),
        ("6.text=a=b", ("6", "text", "a=b")),
        ('"A.B=C".text=hi', ("A.B=C", "text", "hi")),
        ("'Load Checkpoint - BASE'.ckpt_name=m", ("Load Checkpoint - BASE", "ckpt_name", "m")),
        ("6.text=", ("6", "text", "")),
    ],
)
def test_split_spec(spec: str, parts: tuple[str, str, str]) -> None:
    assert split_spec(spec) == parts


@pytest.mark.parametrize(
    "spec", ["noequals", "nodot=1", ".x=1", "a.=1", '"open.x=1', '"A"x=1', "=5"]
)
def test_split_spec_rejects(spec: str) -> None:
    with pytest.raises(OverrideError):
        split_spec(spec)


@pytest.mark.parametrize(
    ("ref", "node_id"),
    [
        ("10", "10"),
        ("KSampler (Advanced) - BASE", "10"),
        ("ksampler (advanced) - refiner", "11"),
        ("EmptyLatentImage", "5"),
        ("Empty Latent Image", "5"),
    ],
)
def test_resolve_node(sdxl: dict[str, Any], ref: str, node_id: str) -> None:
    assert resolve_node(sdxl, ref) == node_id


def test_ambiguous_names_list_the_candidates(sdxl: dict[str, Any]) -> None:
    with pytest.raises(OverrideError) as caught:
        resolve_node(sdxl, "CLIPTextEncode")
    text = str(caught.value)
    assert "matches 4 nodes" in text
    for node_id in ("6", "7", "15", "16"):
        assert f"  {node_id} (CLIPTextEncode) 'CLIP Text Encode (Prompt)'" in text


def test_unknown_node_lists_every_node(sdxl: dict[str, Any]) -> None:
    with pytest.raises(OverrideError) as caught:
        resolve_node(sdxl, "Nope")
    assert "19 (SaveImage) 'Save Image'" in str(caught.value)
    assert "hint:" in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "node", "name", "value"),
    [
        ("10.noise_seed=42", "10", "noise_seed", 42),
        ("10.steps=2.0", "10", "steps", 2),
        ("10.cfg=7", "10", "cfg", 7.0),
        ("10.sampler_name=ddim", "10", "sampler_name", "ddim"),
        ('10.sampler_name="ddim"', "10", "sampler_name", "ddim"),
        ("6.text=123", "6", "text", "123"),
        ("6.text=1.50", "6", "text", "1.50"),
        ('6.text="quoted"', "6", "text", "quoted"),
        ("6.text=$(rm -rf /); `id` | cat > x", "6", "text", "$(rm -rf /); `id` | cat > x"),
        ("4.ckpt_name=sd15/other.safetensors", "4", "ckpt_name", "sd15/other.safetensors"),
        ("5.width=1024", "5", "width", 1024),
    ],
)
def test_values_are_coerced_to_the_input_type(
    sdxl: dict[str, Any], catalog: NodeCatalog, spec: str, node: str, name: str, value: Any
) -> None:
    before = copy.deepcopy(sdxl)
    out, (change,) = apply_overrides(sdxl, catalog, [spec])
    assert out[node]["inputs"][name] == value
    assert type(out[node]["inputs"][name]) is type(value)
    assert (change.node_id, change.input, change.new, change.old) == (
        node,
        name,
        value,
        before[node]["inputs"][name],
    )
    assert sdxl == before  # never mutated


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10.steps=2.5", "expects a whole number (INT)"),
        ("10.steps=abc", "expects a whole number (INT)"),
        ("10.steps=true", "expects a whole number (INT)"),
        ("10.cfg=NaN", "expects a number (FLOAT)"),
        ("10.cfg=high", "expects a number (FLOAT)"),
        ("10.sampler_name=nope", "'nope' is not one of: 'euler'"),
        ("10.model=4", "takes a link from another node (MODEL)"),
        ("10.bogus=1", "has no input 'bogus'; its inputs are: add_noise, noise_seed"),
        ('10.model=["99", 0]', "link source node '99' is not in the workflow"),
    ],
)
def test_bad_values_are_refused_clearly(
    sdxl: dict[str, Any], catalog: NodeCatalog, spec: str, message: str
) -> None:
    with pytest.raises(OverrideError) as caught:
        apply_overrides(sdxl, catalog, [spec])
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_booleans(catalog: NodeCatalog) -> None:
    prompt = {"1": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}}}
    for text, value in (("false", False), ("No", False), ("on", True), ("1", True)):
        out, _ = apply_overrides(prompt, catalog, [f"1.value={text}"])
        assert out["1"]["inputs"]["value"] is value
    with pytest.raises(OverrideError, match="true or false"):
        apply_overrides(prompt, catalog, ["1.value=maybe"])


def test_links_can_be_set_and_replaced(sdxl: dict[str, Any], catalog: NodeCatalog) -> None:
    out, (change,) = apply_overrides(sdxl, catalog, ['11.model=["4", 0]'])
    assert out["11"]["inputs"]["model"] == ["4", 0] and not change.replaced_link
    sdxl["10"]["inputs"]["noise_seed"] = ["5", 0]
    out, (change,) = apply_overrides(sdxl, catalog, ["10.noise_seed=7"])
    assert change.replaced_link and out["10"]["inputs"]["noise_seed"] == 7
    assert "was link" in change.describe()
    assert change.to_json()["replaced_link"] is True


def test_without_catalog_values_stay_as_written(sdxl: dict[str, Any]) -> None:
    sets = ["10.steps=30", "6.text=hello world", "10.scheduler=[1, 2]", "10.add_noise=null"]
    out, changes = apply_overrides(sdxl, None, sets)
    inputs = out["10"]["inputs"]
    assert (inputs["steps"], out["6"]["inputs"]["text"]) == (30, "hello world")
    assert inputs["scheduler"] == {"__value__": [1, 2]}  # a bare list would read as a link
    assert inputs["add_noise"] is None
    assert [c.input for c in changes] == ["steps", "text", "scheduler", "add_noise"]
    with pytest.raises(OverrideError, match="has no input 'extra'"):
        apply_overrides(sdxl, None, ["10.extra=1"])  # only the inputs the prompt shows


def test_later_sets_see_earlier_ones(sdxl: dict[str, Any], catalog: NodeCatalog) -> None:
    out, changes = apply_overrides(sdxl, catalog, ["10.steps=5", "10.steps=6"])
    assert out["10"]["inputs"]["steps"] == 6 and changes[1].old == 5
    assert not math.isnan(out["10"]["inputs"]["cfg"])


def test_parse_inputs_checks_paths(tmp_path: Path) -> None:
    image = tmp_path / "in put.png"
    image.write_bytes(b"png")
    (item,) = parse_inputs([f"Load Image.image={image}"])
    assert item == InputFile("Load Image", "image", image)
    with pytest.raises(OverrideError, match="does not exist"):
        parse_inputs([f"13.image={tmp_path / 'missing.png'}"])
    with pytest.raises(OverrideError, match="is not a file"):
        parse_inputs([f"13.image={tmp_path}"])
    with pytest.raises(OverrideError):
        parse_inputs([str(image)])


def test_apply_uploads_sets_server_names(
    shared_dir: Path, catalog: NodeCatalog, tmp_path: Path
) -> None:
    prompt = json.loads(
        (shared_dir / "fixtures" / "workflows-api" / "hidream_e1_1.api.json").read_text()
    )
    image = tmp_path / "photo.png"
    image.write_bytes(b"png")
    (item,) = parse_inputs([f"Load Image.image={image}"])
    out, (change,) = apply_uploads(
        prompt, catalog, [item], {("Load Image", "image"): "photo (1).png"}
    )
    assert out["13"]["inputs"]["image"] == "photo (1).png"
    assert (change.node_id, change.old) == ("13", "input.webp")
    assert prompt["13"]["inputs"]["image"] == "input.webp"
    with pytest.raises(OverrideError, match="was not uploaded"):
        apply_uploads(prompt, catalog, [item], {})
    bad = InputFile("Load Image", "picture", image)
    with pytest.raises(OverrideError, match="has no input 'picture'"):
        apply_uploads(prompt, catalog, [bad], {("Load Image", "picture"): "x.png"})
