"""GGUF children and parents: llama.cpp files of the zoo's trained models and mergekit merges.

Each GGUF is written by llama.cpp's own ``gguf`` package the way its converter and llama-quantize
write them (names mapped, q/k rows permuted for Llama, norms F32, per-tensor fallback where a row
fills no K block), in a folder with nothing else, as GGUF repos on the Hub are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provbot.detectors import scan
from provbot.detectors.errors import NotFoundError, WeightFormatError
from provbot.detectors.weights.opening import open_source
from tests.support.gguf_files import gguf_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ggufs(model_zoo, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("gguf")
    made: dict[tuple[str, str], str] = {}

    def get(name: str, qtype: str) -> str:
        if (name, qtype) not in made:
            made[(name, qtype)] = str(gguf_of(model_zoo.path(name), root / f"{name}-{qtype}", qtype))
        return made[(name, qtype)]

    return get


def _weights(r) -> dict[str, float]:  # noqa: ANN001
    return {Path(p.ref).name: p.weight for p in r.parents}


@pytest.mark.parametrize(("qtype", "bits"), [("Q8_0", 8), ("Q4_K", 5)])
def test_gguf_quantization_of_a_model_is_a_quantized_copy(model_zoo, ggufs, qtype: str, bits: int) -> None:  # noqa: ANN001
    """(Q4_K on 64-wide rows falls back to Q5_0, as llama-quantize does.)"""
    child = ggufs("llama_a", qtype)
    parents = [str(model_zoo.path(n)) for n in ("llama_a", "llama_b", "llama_base")]
    r = scan(child, parents)
    assert r.relation == "quantized", (r.relation, r.notes)
    assert [Path(p.ref).name for p in r.parents] == ["llama_a"]
    assert any("is a GGUF file (llama;" in n for n in r.notes)


def test_k_quant_copy_of_a_wide_model(model_zoo, ggufs) -> None:  # noqa: ANN001
    child = ggufs("llama_wide_a", "Q4_K")
    r = scan(child, [str(model_zoo.path("llama_wide_a")), str(model_zoo.path("llama_wide_base"))])
    assert r.relation == "quantized", (r.relation, r.notes)
    assert [Path(p.ref).name for p in r.parents] == ["llama_wide_a"]
    assert any("Q4_K" in n for n in r.notes)
    # A small budget reads a sample: whole blocks around the sampled elements, never the file.
    small = scan(child, [str(model_zoo.path("llama_wide_a")), str(model_zoo.path("llama_wide_base"))], budget_mb=0.1)
    assert small.relation == "quantized", small.notes
    size = Path(child, "llama_wide_a-Q4_K.gguf").stat().st_size
    assert small.bytes_read[child] < 0.6 * size, (small.bytes_read[child], size)


def test_f16_gguf_of_a_model_is_a_copy(model_zoo, ggufs) -> None:  # noqa: ANN001
    child = ggufs("llama_a", "F16")
    r = scan(child, [str(model_zoo.path(n)) for n in ("llama_a", "llama_base")])
    assert r.relation == "copy", (r.relation, r.notes)
    assert [Path(p.ref).name for p in r.parents] == ["llama_a"]


@pytest.mark.parametrize(
    ("kind", "qtype", "full"),
    [("llama", "Q8_0", False), ("llama", "Q8_0", True), ("qwen2", "Q8_0", False)],
)
def test_gguf_of_a_merge_is_the_merge(model_zoo, ggufs, kind: str, qtype: str, full: bool) -> None:  # noqa: ANN001
    child = ggufs(f"{kind}_linear", qtype)
    parents = [str(model_zoo.path(f"{kind}_{n}")) for n in ("a", "b", "base")]
    r = scan(child, parents, full=full)
    assert (r.relation, r.method) == ("merge", "linear"), (r.relation, r.notes)
    w = _weights(r)
    assert abs(w[f"{kind}_a"] - 0.6) < 0.03 and abs(w[f"{kind}_b"] - 0.4) < 0.03, w


def test_moe_gguf_experts_are_split_per_expert(model_zoo, ggufs) -> None:  # noqa: ANN001
    """Mixtral converted as llama.cpp does (architecture ``llama``, experts merged per layer)."""
    parents = [str(model_zoo.path(n)) for n in ("mixtral_a", "mixtral_b", "mixtral_base")]
    child = ggufs("mixtral_a", "Q8_0")
    names = open_source(child).tensors()
    assert {n for n in names if n.startswith("model.layers.0.block_sparse_moe.")} == {
        *(f"model.layers.0.block_sparse_moe.experts.{e}.w{i}.weight" for e in range(4) for i in (1, 2, 3)),
        "model.layers.0.block_sparse_moe.gate.weight",
    }
    r = scan(child, parents)
    assert r.relation == "quantized", (r.relation, r.notes)
    assert r.tensors == len(names)
    assert [Path(p.ref).name for p in r.parents] == ["mixtral_a"]
    ft = scan(ggufs("mixtral_c", "Q8_0"), [parents[0], parents[2]])
    assert ft.relation == "finetune" and [Path(p.ref).name for p in ft.parents] == ["mixtral_base"], ft.notes


def test_gguf_parents(model_zoo, ggufs) -> None:  # noqa: ANN001
    """A safetensors merge of two models published only as GGUF."""
    parents = [ggufs("llama_a", "F16"), ggufs("llama_b", "F16"), ggufs("llama_base", "F16")]
    r = scan(str(model_zoo.path("llama_linear")), parents)
    assert (r.relation, r.method) == ("merge", "linear"), (r.relation, r.notes)
    w = {Path(p.ref).name.rsplit("-", 1)[0]: p.weight for p in r.parents}
    assert abs(w["llama_a"] - 0.6) < 0.03 and abs(w["llama_b"] - 0.4) < 0.03, w


def test_unrelated_gguf(model_zoo, ggufs) -> None:  # noqa: ANN001
    r = scan(ggufs("llama_unrelated", "Q8_0"), [str(model_zoo.path(n)) for n in ("llama_a", "llama_base")])
    assert r.relation == "unrelated", (r.relation, r.notes)


def test_a_gguf_file_path_and_the_cli(model_zoo, ggufs) -> None:  # noqa: ANN001
    folder = Path(ggufs("llama_linear", "Q8_0"))
    file = folder / "llama_linear-Q8_0.gguf"
    parents = [str(model_zoo.path(n)) for n in ("llama_a", "llama_b")]
    cmd = [sys.executable, "-m", "provbot.bot.cli", "scan", str(file), "--json"]
    for p in parents:
        cmd += ["--parent", p]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["relation"], got["method"]) == ("merge", "linear")


def test_the_most_precise_file_is_picked_and_split_models_are_one(model_zoo, ggufs, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "repo"
    folder.mkdir()
    for q in ("Q8_0", "F16"):
        src = Path(ggufs("llama_a", q)) / f"llama_a-{q}.gguf"
        (folder / f"model-{q}.gguf").write_bytes(src.read_bytes())
    (folder / "mmproj-model-f32.gguf").write_bytes(b"not read")
    src = open_source(str(folder))
    assert src.files() == ["model-F16.gguf"]
    # A split model missing a part is refused before anything is read.
    split = tmp_path / "split"
    split.mkdir()
    data = (folder / "model-F16.gguf").read_bytes()
    (split / "m-00001-of-00003.gguf").write_bytes(data)
    (split / "m-00003-of-00003.gguf").write_bytes(data)
    with pytest.raises(NotFoundError, match=r"missing part\(s\) \[2\] of 3"):
        open_source(str(split / "m-00001-of-00003.gguf"))


def test_a_truncated_gguf_is_a_clear_error(model_zoo, ggufs, tmp_path: Path) -> None:  # noqa: ANN001
    src = Path(ggufs("llama_a", "Q8_0")) / "llama_a-Q8_0.gguf"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "m.gguf").write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(WeightFormatError, match="runs past the end of the file"):
        scan(str(bad), [str(model_zoo.path("llama_a"))])


def test_gguf_repo_through_the_hub(model_zoo, ggufs, localhub) -> None:  # noqa: ANN001
    """A GGUF-only repo with two quantizations: the more precise is read, in ranged requests."""
    files = {
        f"llama_linear-{q}.gguf": Path(ggufs("llama_linear", q)) / f"llama_linear-{q}.gguf" for q in ("Q8_0", "Q4_K")
    }
    files["README.md"] = Path(ggufs("llama_linear", "Q8_0")).parent / "README.md"
    files["README.md"].write_text("---\nbase_model: acme/llama_a\n---\n# a GGUF\n")
    localhub.add_repo("acme/llama_linear-GGUF", files)
    for name in ("llama_a", "llama_b"):
        localhub.add_repo(f"acme/{name}", model_zoo.path(name))
    r = scan("acme/llama_linear-GGUF", ["acme/llama_a", "acme/llama_b"], endpoint=localhub.url)
    assert (r.relation, r.method) == ("merge", "linear"), (r.relation, r.notes)
    assert {p.ref: round(p.weight, 2) for p in r.parents} == pytest.approx(
        {"acme/llama_a": 0.6, "acme/llama_b": 0.4}, abs=0.03
    )
    assert any("GGUF file (llama; 16 Q8_0" in n for n in r.notes), r.notes
    assert 0 < r.requests["acme/llama_linear-GGUF"] < 40
    # The Hub's gguf summary of the repo: what the poller sizes GGUF-only uploads by.
    from huggingface_hub import HfApi
    from safetensors.numpy import load_file

    info = HfApi(endpoint=localhub.url, token=False).model_info("acme/llama_linear-GGUF", expand=["gguf", "tags"])
    params = sum(v.size for v in load_file(model_zoo.path("llama_linear") / "model.safetensors").values())
    assert info.gguf == {"total": params, "architecture": "llama", "context_length": 128}
    assert "gguf" in info.tags


def test_the_index_takes_gguf_models_and_finds_a_gguf_childs_parents(model_zoo, ggufs, tmp_path: Path) -> None:  # noqa: ANN001
    """GGUF parents are indexed in their original's family; a GGUF merge finds its parents."""
    from provbot.bot.index.candidates import select_candidates
    from provbot.bot.index.ingest import add_models
    from provbot.bot.index.store import IndexStore

    store = IndexStore(f"sqlite:///{tmp_path / 'index.db'}")
    refs = [ggufs("llama_a", "Q8_0"), str(model_zoo.path("llama_b")), str(model_zoo.path("llama_base"))]
    outcomes = add_models(refs, store)
    assert [o.status for o in outcomes] == ["added"] * 3, [o.message for o in outcomes]
    report = select_candidates(ggufs("llama_linear", "Q4_K"), store=store)
    assert report.match == "exact", report.notes
    chosen = {Path(r).name.split("-")[0] for r in report.chosen[:2]}
    assert chosen == {"llama_a", "llama_b"}, report.chosen


def test_types_not_decoded_are_named_and_left_out(model_zoo, tmp_path: Path) -> None:  # noqa: ANN001
    raw = {"model.layers.1.mlp.down_proj.weight": "IQ4_NL", "model.layers.0.mlp.up_proj.weight": "IQ4_NL"}
    child = gguf_of(model_zoo.path("llama_a"), tmp_path / "iq", "Q8_0", raw_types=raw)
    r = scan(str(child), [str(model_zoo.path(n)) for n in ("llama_a", "llama_base")])
    assert r.relation == "quantized", (r.relation, r.notes)
    assert any("2 of ggml IQ4_NL tensor(s) are of types provbot does not decode: left out" in n for n in r.notes), (
        r.notes
    )
    assert r.tensors == 19


def test_the_crawl_indexes_gguf_only_hub_repos_into_their_originals_family(
    model_zoo, ggufs, localhub, tmp_path: Path
) -> None:  # noqa: ANN001
    """A GGUF-only repo in a listing is a model: sized by the Hub's gguf summary, fingerprinted into
    its original's family, sketched; a GGUF merge served by the Hub then finds its parents."""
    from provbot.bot.index.candidates import select_candidates
    from provbot.bot.index.crawl import crawl
    from provbot.bot.index.store import IndexStore

    localhub.add_repo("quant/llama_a-GGUF", {"llama_a-Q8_0.gguf": Path(ggufs("llama_a", "Q8_0")) / "llama_a-Q8_0.gguf"})
    localhub.add_repo("acme/llama_b", model_zoo.path("llama_b"))
    localhub.add_repo("acme/llama_base", model_zoo.path("llama_base"))
    store = IndexStore(f"sqlite:///{tmp_path / 'index.db'}")
    report = crawl(store, endpoint=localhub.url, sorts=["downloads"], limit=10)
    assert (report.added, report.skipped, report.failed) == (3, 0, 0), report
    gguf_entry, original = store.get("quant/llama_a-GGUF"), store.get("acme/llama_b")
    assert gguf_entry is not None and original is not None
    assert gguf_entry.revision == localhub.sha("quant/llama_a-GGUF")
    assert gguf_entry.family_key == original.family_key
    localhub.add_repo(
        "someone/merge-GGUF", {"llama_linear-Q4_K.gguf": Path(ggufs("llama_linear", "Q4_K")) / "llama_linear-Q4_K.gguf"}
    )
    chosen = select_candidates("someone/merge-GGUF", store=store, endpoint=localhub.url).chosen[:2]
    assert set(chosen) == {"quant/llama_a-GGUF", "acme/llama_b"}, chosen


def test_a_gguf_header_is_read_once_per_process(model_zoo, ggufs, localhub) -> None:  # noqa: ANN001
    from provbot.detectors.hub import HubClient
    from provbot.detectors.weights.gguf_source import GgufSource
    from provbot.detectors.weights.header_cache import HeaderCache
    from provbot.detectors.weights.sources import HubSource

    name = "llama_linear-Q8_0.gguf"
    localhub.add_repo("acme/cached-GGUF", {name: Path(ggufs("llama_linear", "Q8_0")) / name})
    cache, client = HeaderCache(), HubClient(localhub.url)
    first = GgufSource(HubSource("acme/cached-GGUF", client=client, header_cache=cache), [name])
    second = GgufSource(HubSource("acme/cached-GGUF", client=client, header_cache=cache), [name])
    names = first.tensors().keys()
    assert first.requests > 1
    assert second.tensors().keys() == names
    assert second.requests == 1  # its model info: the header came from the cache
