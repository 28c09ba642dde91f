"""Catalog fetching: cache, ETag revalidation, TTL, fallbacks that say so; the registry."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from tests.catalog.standins import Standin, registry_node

from comfyfleet.catalog import Catalogs
from comfyfleet.errors import UsageError

MAP = "/manager/extension-node-map.json"


async def test_fetch_caches_then_revalidates_with_etag(
    standin: Standin, standin_settings: Any
) -> None:
    settings = standin_settings()
    async with Catalogs(settings) as catalogs:
        index = await catalogs.nodes()
        assert catalogs.provenance["node-map"].origin == "network"
        assert catalogs.warnings == []
    assert index.resolve("ImpactWildcardProcessor").chosen is not None
    assert standin.hits(MAP) == 1
    cached = sorted(p.name for p in (settings.catalog.cache_dir or settings.cache_dir()).iterdir())
    assert any(n.startswith("node-map-") and n.endswith(".meta.json") for n in cached)

    # within the TTL: the cached copy, no request at all
    async with Catalogs(settings) as catalogs:
        await catalogs.nodes()
        assert catalogs.provenance["node-map"].origin == "cache"
    assert standin.hits(MAP) == 1

    # TTL over: a conditional request; 304 keeps the cached copy
    stale = standin_settings(COMFYFLEET_CATALOG__TTL="0")
    async with Catalogs(stale) as catalogs:
        await catalogs.nodes()
        assert catalogs.provenance["node-map"].origin == "cache"
        assert catalogs.warnings == []
    _, headers = [r for r in standin.requests if r[0] == MAP][-1]
    assert headers.get("If-None-Match", "").startswith('"')

    # the catalog changed upstream: 200 with the new content replaces the cache
    standin.files["extension-node-map.json"] = json.dumps(
        {"https://github.com/someone/NewPack": [["BrandNewNode"], {"title_aux": "New"}]}
    ).encode()
    async with Catalogs(stale) as catalogs:
        index = await catalogs.nodes()
        assert catalogs.provenance["node-map"].origin == "network"
    res = index.resolve("BrandNewNode")
    assert res.chosen is not None and res.chosen.pack.repo == "https://github.com/someone/NewPack"


async def test_failure_with_a_cache_uses_it_and_says_so(
    standin: Standin, standin_settings: Any
) -> None:
    async with Catalogs(standin_settings()) as catalogs:
        await catalogs.nodes()
    standin.failing.add(MAP)
    async with Catalogs(standin_settings(COMFYFLEET_CATALOG__TTL="0")) as catalogs:
        index = await catalogs.nodes()
        prov = catalogs.provenance["node-map"]
        assert prov.origin == "cache"
        assert prov.warning is not None and "HTTP 500" in prov.warning
        assert "cached copy" in prov.warning
        assert catalogs.warnings == [prov.warning]
    assert index.resolve("ImpactWildcardProcessor").chosen is not None


@pytest.mark.parametrize(
    "breakage",
    [
        "http-500",
        "not-json",
        "wrong-shape",
    ],
)
async def test_failure_without_a_cache_falls_back_to_the_shipped_copy(
    standin: Standin, standin_settings: Any, breakage: str
) -> None:
    if breakage == "http-500":
        standin.failing.add(MAP)
    elif breakage == "not-json":
        standin.files["extension-node-map.json"] = b"<html>rate limited</html>"
    else:
        standin.files["extension-node-map.json"] = b'["not", "a", "map"]'
    async with Catalogs(standin_settings()) as catalogs:
        index = await catalogs.nodes()
        prov = catalogs.provenance["node-map"]
        assert prov.origin == "shipped"
        assert prov.warning is not None
        assert "extension-node-map.json" in prov.warning and "shipped" in prov.warning
        assert catalogs.provenance["node-list"].origin == "network"
    assert index.resolve("ImpactWildcardProcessor").chosen is not None
    # nothing broken was cached: the next run asks again
    async with Catalogs(standin_settings()) as catalogs:
        await catalogs.nodes()
        assert catalogs.provenance["node-map"].origin == "shipped"
    assert standin.hits(MAP) == 2


async def test_unreachable_catalogs_fall_back_with_warnings(standin_settings: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = standin_settings(
        COMFYFLEET_CATALOG__NODE_MAP_URL=f"{dead}/map.json",
        COMFYFLEET_CATALOG__NODE_LIST_URL=f"{dead}/list.json",
        COMFYFLEET_CATALOG__REGISTRY_URL=dead,
    )
    async with Catalogs(settings) as catalogs:
        found = await catalogs.resolve_nodes(["NoSuchNodeAnywhere42", "ImpactWildcardProcessor"])
        warnings = catalogs.warnings
    assert found["NoSuchNodeAnywhere42"].unknown
    assert found["ImpactWildcardProcessor"].chosen is not None
    assert len(warnings) == 3  # both catalog files, then the registry
    assert all("cannot reach" in w for w in warnings[:2])
    assert "Comfy Registry" in warnings[2]


async def test_offline_asks_nothing(standin: Standin, standin_settings: Any) -> None:
    async with Catalogs(standin_settings(COMFYFLEET_CATALOG__OFFLINE="1")) as catalogs:
        found = await catalogs.resolve_nodes(["PromptBuilder"])
        assert catalogs.provenance["node-map"].origin == "shipped"
        assert catalogs.warnings == []
    assert found["PromptBuilder"].ambiguous
    assert standin.requests == []


async def test_registry_settles_unknown_classes_and_remembers(
    standin: Standin, standin_settings: Any
) -> None:
    standin.registry_classes["GlowFilterPro"] = registry_node(
        "glow-nodes", "https://github.com/glow/glow-nodes", version="2.1.0"
    )
    async with Catalogs(standin_settings()) as catalogs:
        found = await catalogs.resolve_nodes(["GlowFilterPro", "NoSuchNodeAnywhere42", "KSampler"])
        assert catalogs.warnings == []
    glow = found["GlowFilterPro"]
    assert glow.chosen is not None and glow.chosen.source == "registry"
    assert glow.chosen.pack.id == "glow-nodes" and glow.chosen.pack.install_type == "cnr"
    assert found["NoSuchNodeAnywhere42"].unknown
    assert found["KSampler"].core
    asked = standin.hits("/registry/")
    assert asked == 2  # core classes and settled ones are not asked about
    async with Catalogs(standin_settings()) as catalogs:
        again = await catalogs.resolve_nodes(["GlowFilterPro", "NoSuchNodeAnywhere42"])
    assert again["GlowFilterPro"].chosen == glow.chosen
    assert standin.hits("/registry/") == asked  # answers, negative ones too, were remembered


async def test_registry_orders_but_does_not_settle_an_ambiguous_class(
    standin: Standin, standin_settings: Any
) -> None:
    standin.registry_classes["PromptBuilder"] = registry_node(
        "multimodel", "https://github.com/FaberVS/MultiModel"
    )
    async with Catalogs(standin_settings()) as catalogs:
        res = (await catalogs.resolve_nodes(["PromptBuilder"]))["PromptBuilder"]
    assert res.ambiguous
    assert res.candidates[0].pack.id == "MultiModel"
    assert any("Comfy Registry" in n for n in res.notes)


async def test_registry_resolves_a_recorded_pack_the_list_lacks(
    standin: Standin, standin_settings: Any
) -> None:
    from comfyfleet.catalog import PackHint

    standin.registry_nodes["fresh-pack"] = registry_node("fresh-pack", "https://github.com/a/fresh")
    async with Catalogs(standin_settings()) as catalogs:
        res = await catalogs.resolve_nodes(
            ["FreshNode"], hints={"FreshNode": PackHint(cnr_id="fresh-pack", version="0.3.0")}
        )
    chosen = res["FreshNode"].chosen
    assert chosen is not None and chosen.why == "cnr_id" and chosen.version == "0.3.0"
    assert chosen.pack.repo == "https://github.com/a/fresh"


async def test_choices_settle_ambiguous_classes(standin: Standin, standin_settings: Any) -> None:
    async with Catalogs(standin_settings(COMFYFLEET_CATALOG__REGISTRY="0")) as catalogs:
        found = await catalogs.resolve_nodes(
            ["PromptBuilder", "NoSuchNodeAnywhere42"],
            choices={
                "PromptBuilder": "FaberVS/MultiModel",
                "NoSuchNodeAnywhere42": "https://github.com/me/my-nodes.git",
            },
        )
        with pytest.raises(UsageError) as err:
            await catalogs.resolve_nodes(["PromptBuilder"], choices={"PromptBuilder": "nope"})
    picked = found["PromptBuilder"].chosen
    assert picked is not None and picked.pack.id == "MultiModel" and picked.why == "exact"
    mine = found["NoSuchNodeAnywhere42"].chosen
    assert mine is not None and mine.why == "user" and mine.pack.id == "my-nodes"
    assert "ComfyUI-WildPromptor" in str(err.value) and "nope" in str(err.value)
    assert standin.hits("/registry/") == 0
