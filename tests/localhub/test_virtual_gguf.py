"""Virtual GGUF repos over real HTTP: a llama.cpp file the gguf package reads, Q4_K of a virtual repo,
tensor blocks computed per range, and scanned as a quantization of its base."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import httpx
import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download

from provbot.bot.localhub.server import LocalHub
from provbot.bot.localhub.virtual.gguf_file import gguf_row_source
from provbot.bot.localhub.virtual.layouts import LAYOUTS
from provbot.bot.localhub.virtual.q4k import q4_k_blocks
from provbot.bot.localhub.virtual.values import values
from provbot.detectors import scan
from provbot.detectors.hub.client import HubClient
from provbot.detectors.weights.gguf_names import hf_name
from tests.localhub.helpers import llama_family, serve_virtual
from tests.support.gguf_files import llama_permute

# Rows of 256 fill Q4_K blocks; down_proj's rows of 320 do not, so it falls back to Q5_0.
PARAMS = {"layers": 2, "hidden": 256, "heads": 4, "kv_heads": 2, "intermediate": 320, "vocab": 256}
SPEC = llama_family(
    PARAMS,
    2,
    """
[repos."v/base"]
recipe = { kind = "base", seed = 1 }

[repos."v/tune"]
recipe = { kind = "delta", base = "v/base", seed = 2 }

[repos."v/base-gguf"]
recipe = { kind = "gguf", of = "v/base", quant = "Q4_K" }
card = { license = "mit" }
""",
)
FILE = "base-Q4_K.gguf"


@pytest.fixture(scope="module")
def vhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    with serve_virtual(tmp_path_factory, SPEC) as hub:
        yield hub


@pytest.fixture(scope="module")
def whole(vhub: LocalHub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    return Path(hf_hub_download("v/base-gguf", FILE, endpoint=vhub.url, cache_dir=cache, token=False))


def _recipes(hub: LocalHub):  # noqa: ANN202
    return hub.store.resolve("v/base-gguf", None).files[FILE].virtual.body.recipes


def test_model_info_has_the_gguf_summary_and_no_safetensors(vhub: LocalHub) -> None:
    info = HfApi(endpoint=vhub.url, token=False).model_info("v/base-gguf", files_metadata=True)
    assert [s.rfilename for s in info.siblings] == ["README.md", FILE]
    total = sum(int(np.prod(shape)) for _, shape in LAYOUTS["llama"].tensors(**PARAMS))
    assert info.gguf is not None and info.gguf["total"] == total
    assert info.gguf["architecture"] == "llama" and info.gguf["context_length"] == 8192
    assert "gguf" in info.tags and info.safetensors is None and info.config is None
    sibling = info.siblings[1]
    assert sibling.lfs is not None and sibling.size == vhub.store.resolve("v/base-gguf", None).files[FILE].size


def test_gguf_reader_reads_it_and_values_are_close_to_the_base(vhub: LocalHub, whole: Path) -> None:
    reader = gguf.GGUFReader(whole)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["llama.block_count"].contents() == PARAMS["layers"]
    recipes = _recipes(vhub)
    kinds = {}
    for t in reader.tensors:
        name = hf_name(t.name, "llama", PARAMS["layers"])
        assert name is not None, t.name
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1)
        want = values("v/base", recipes, name, 0, got.size)
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = PARAMS["heads"] if "q_proj" in name else PARAMS["kv_heads"]
            want = llama_permute(want.reshape(-1, PARAMS["hidden"]), heads).reshape(-1)
        kinds[name.split(".")[-2]] = t.tensor_type.name
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            np.testing.assert_array_equal(got, want)
        else:
            assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.12, (name, t.tensor_type.name)
    assert kinds["input_layernorm"] == "F32" and kinds["norm"] == "F32"
    assert kinds["q_proj"] == kinds["embed_tokens"] == kinds["lm_head"] == "Q4_K"
    assert kinds["down_proj"] == "Q5_0"  # 320-wide rows fill no 256-value block
    assert len(reader.tensors) == len(list(LAYOUTS["llama"].tensors(**PARAMS)))


def test_ranges_equal_the_same_slice_of_the_whole_file(vhub: LocalHub, whole: Path) -> None:
    data = whole.read_bytes()
    body = vhub.store.resolve("v/base-gguf", None).files[FILE].virtual.body
    start = body.data_start
    client = HubClient(vhub.url)
    for a, b in [
        (0, 4),
        (start - 5, start + 7),
        (start + 1, start + 143),  # inside one Q4_K block
        (start + 100, start + 100_000),  # across tensors and their alignment padding
        (len(data) // 2, len(data) // 2 + 3000),  # inside the Q5_0 / F32 region
        (len(data) - 50, len(data)),
    ]:
        assert client.read_range("v/base-gguf", FILE, a, b) == data[a:b], (a, b)
    url = f"{vhub.url}/v/base-gguf/resolve/main/{FILE}"
    r = httpx.get(url, headers={"Range": f"bytes={start + 10}-{start + 20}"}, follow_redirects=True)
    assert r.status_code == 206 and r.content == data[start + 10 : start + 21]


def test_q4k_blocks_of_a_slice_are_that_slice_of_the_blocks() -> None:
    """What lets a range cost only its own super-blocks."""
    x = np.random.default_rng(3).normal(size=8 * 256).astype(np.float32) * 0.02
    whole = q4_k_blocks(x)
    np.testing.assert_array_equal(q4_k_blocks(x[512:1280]), whole[2:5])
    back = gguf.quants.dequantize(whole, gguf.GGMLQuantizationType.Q4_K).reshape(-1)
    assert np.linalg.norm(back - x) / np.linalg.norm(x) < 0.12


def test_gguf_rows_come_from_the_permuted_rows() -> None:
    w = np.arange(32 * 3).reshape(32, 3)
    for heads in (1, 2, 4, 8):
        permuted = llama_permute(w, heads)
        assert all((permuted[g] == w[gguf_row_source(g, 32, heads)]).all() for g in range(32))


def test_scan_names_the_virtual_gguf_a_quantization_of_its_base(vhub: LocalHub) -> None:
    r = scan("v/base-gguf", ["v/tune", "v/base"], endpoint=vhub.url)
    assert r.relation == "quantized", (r.relation, r.notes)
    assert [p.ref for p in r.parents][:1] == ["v/base"]
    assert any("is a GGUF file (llama;" in n for n in r.notes) and any("Q4_K" in n for n in r.notes), r.notes


def test_the_crawl_indexes_the_virtual_gguf_into_its_bases_family(vhub: LocalHub, tmp_path: Path) -> None:
    """The listing's gguf summary makes the GGUF-only repo a model the index takes."""
    from provbot.bot.index.crawl import crawl
    from provbot.bot.index.store import IndexStore

    listed = HfApi(endpoint=vhub.url, token=False).list_models(author="v", expand=["gguf", "safetensors"])
    assert {m.id: m.gguf is not None for m in listed} == {"v/base": False, "v/tune": False, "v/base-gguf": True}
    store = IndexStore(f"sqlite:///{tmp_path / 'index.db'}")
    report = crawl(store, endpoint=vhub.url, sorts=["downloads"], limit=10)
    assert (report.added, report.skipped, report.failed) == (3, 0, 0), report
    gguf_entry, base = store.get("v/base-gguf"), store.get("v/base")
    assert gguf_entry is not None and base is not None
    assert gguf_entry.family_key == base.family_key
