"""Virtual repos over real HTTP: the local Hub answers for them as for stored repos, bytes computed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download
from safetensors.torch import load

from provbot.bot.localhub.server import LocalHub
from provbot.bot.localhub.virtual.layouts import LAYOUTS
from provbot.bot.localhub.virtual.values import from_bf16, values
from provbot.detectors.hub.client import HubClient
from tests.localhub.helpers import llama_family, serve_virtual

PARAMS = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate": 96, "vocab": 128}
SPEC = llama_family(
    PARAMS,
    3,
    """
[repos."v/base"]
recipe = { kind = "base", seed = 1 }
card = { license = "mit" }

[repos."v/tune"]
recipe = { kind = "delta", base = "v/base", seed = 2 }

[repos."v/merge"]
recipe = { kind = "blend", parts = { "v/base" = 0.6, "v/tune" = 0.4 } }
""",
)


@pytest.fixture(scope="module")
def vhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    with serve_virtual(tmp_path_factory, SPEC) as hub:
        assert sorted(r for r in ("v/base", "v/merge", "v/tune") if hub.store.is_virtual(r)) == [
            "v/base",
            "v/merge",
            "v/tune",
        ]
        yield hub


def _recipes(hub: LocalHub, repo: str, shard: str):  # noqa: ANN202
    return hub.store.resolve(repo, None).files[shard].virtual.body.recipes


def _shard_names(api: HfApi, repo: str) -> list[str]:
    return sorted(f for f in api.list_repo_files(repo) if f.endswith(".safetensors"))


def test_model_info_tree_and_listing_like_a_stored_repo(vhub: LocalHub) -> None:
    api = HfApi(endpoint=vhub.url, token=False)
    info = api.model_info("v/merge", files_metadata=True)
    names = [s.rfilename for s in info.siblings]
    assert names == sorted(names) and "config.json" in names and "model.safetensors.index.json" in names
    assert len([n for n in names if n.endswith(".safetensors")]) == 3
    total = sum(math.prod(shape) for _, shape in LAYOUTS["llama"].tensors(**PARAMS))
    assert info.safetensors is not None and info.safetensors.total == total
    assert info.config["model_type"] == "llama" and info.config["num_hidden_layers"] == 2
    shard = next(s for s in info.siblings if s.rfilename.endswith(".safetensors"))
    assert shard.lfs is not None and shard.lfs.size == shard.size
    assert {m.id for m in api.list_models(author="v")} == {"v/base", "v/tune", "v/merge"}
    tree = {e.path: e for e in api.list_repo_tree("v/merge")}
    assert tree[shard.rfilename].size == shard.size
    # The commit sha names the revision; another sha is not found.
    assert api.model_info("v/merge", revision=info.sha).sha == info.sha
    with pytest.raises(Exception, match="404|Revision"):
        api.model_info("v/merge", revision="0" * 40)


def test_whole_file_download_holds_the_computed_values(vhub: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=vhub.url, token=False)
    for repo in ("v/base", "v/merge"):
        shard = _shard_names(api, repo)[0]
        path = hf_hub_download(repo, shard, endpoint=vhub.url, cache_dir=tmp_path, token=False)
        tensors = load(Path(path).read_bytes())
        recipes = _recipes(vhub, repo, shard)
        for name, tensor in tensors.items():
            assert tensor.dtype == torch.bfloat16
            got = from_bf16(tensor.flatten().view(torch.int16).numpy().view(np.uint16))
            np.testing.assert_array_equal(got, values(repo, recipes, name, 0, tensor.numel()))


def test_ranges_across_header_and_data_equal_the_whole_file(vhub: LocalHub) -> None:
    api = HfApi(endpoint=vhub.url, token=False)
    shard = _shard_names(api, "v/tune")[1]
    url = f"{vhub.url}/v/tune/resolve/main/{shard}"
    whole = httpx.get(url, follow_redirects=True).content
    head = 8 + int.from_bytes(whole[:8], "little")
    client = HubClient(vhub.url)
    for start, end in [
        (0, 8),
        (head - 3, head + 5),
        (head - 1, head + 1),
        (head + 1, head + 4099),
        (len(whole) - 3, len(whole)),
    ]:
        assert client.read_range("v/tune", shard, start, end) == whole[start:end]
        r = httpx.get(url, headers={"Range": f"bytes={start}-{end - 1}"}, follow_redirects=True)
        assert r.status_code == 206 and r.content == whole[start:end]
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(whole)}"
    r = httpx.get(url, headers={"Range": f"bytes={len(whole)}-"}, follow_redirects=True)
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(whole)}"


def test_resolve_redirects_and_head_answers_the_size(vhub: LocalHub) -> None:
    api = HfApi(endpoint=vhub.url, token=False)
    shard = _shard_names(api, "v/base")[0]
    size = vhub.store.resolve("v/base", None).files[shard].size
    r = httpx.head(f"{vhub.url}/v/base/resolve/main/{shard}")
    assert r.status_code == 302 and r.headers["location"].startswith("/cdn/v/base/")
    assert int(r.headers["x-linked-size"]) == size
    r = httpx.head(f"{vhub.url}/v/base/resolve/main/config.json")  # small files are not redirected
    assert r.status_code == 200 and json.loads(httpx.get(r.url).content)["model_type"] == "llama"
    r = httpx.get(f"{vhub.url}/v/base/resolve/main/missing.bin")
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"


def test_discussions_open_on_a_virtual_repo(vhub: LocalHub) -> None:
    vhub.add_token("hf_reviewer", "reviewer")
    api = HfApi(endpoint=vhub.url, token="hf_reviewer")
    made = api.create_discussion("v/merge", title="Lineage", description="Looks like a merge of v/base and v/tune.")
    assert [d.title for d in api.get_repo_discussions("v/merge")] == ["Lineage"]
    assert made.num == 1
