"""Packed-integer weights: decoded by full reads (GPTQ, AWQ, compressed-tensors), never a verdict from the rest.

A child that copies a parent's embeddings, head and norms but stores its matrices packed must not
read as a copy of that parent when the matrices, which carry the lineage, were not compared: a
sampled scan (which does not decode them) or a layout provbot cannot decode (bitsandbytes 4-bit,
EXL2, or random bits without a config) makes it inconclusive. A full read decodes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.sampling import packed_weights
from provbot.detectors.weights.scan import scan
from tests.weights.builders import dense_state, write_model


def _write_as_is(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    """``state`` in its own dtypes (``write_model`` casts every tensor to one float dtype)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


def _gptq_style(state: dict[str, torch.Tensor], layers: set[int] | None = None) -> dict[str, torch.Tensor]:
    """``state`` with the projections of ``layers`` (all by default) in GPTQ's tensor layout.

    The packed values are random: nothing here decodes them, so only names, dtypes and shapes matter.
    """
    g = torch.Generator().manual_seed(7)
    out = {}
    for name, w in state.items():
        layer = int(name.split(".")[1]) if name.startswith("layers.") else None
        if w.dim() == 2 and name.endswith("_proj.weight") and (layers is None or layer in layers):
            stem, (rows, cols) = name.removesuffix(".weight"), w.shape
            out[stem + ".qweight"] = torch.randint(0, 2**31 - 1, (cols // 8, rows), generator=g, dtype=torch.int32)
            out[stem + ".qzeros"] = torch.randint(0, 2**31 - 1, (1, max(1, rows // 8)), generator=g, dtype=torch.int32)
            out[stem + ".scales"] = torch.rand(1, rows, generator=g).half()
            out[stem + ".g_idx"] = torch.zeros(cols, dtype=torch.int32)
        else:
            out[name] = w
    return out


def test_packed_weights_are_listed_and_their_companions_are_not(tmp_path: Path) -> None:
    folder = _write_as_is(tmp_path / "q", _gptq_style(dense_state(0)))
    tensors = open_source(str(folder)).tensors()
    found = packed_weights(tensors)
    assert len(found) == 3 * 7 and all(n.endswith(".qweight") for n in found)


def test_a_mostly_packed_child_is_inconclusive_and_says_what_the_rest_shows(tmp_path: Path) -> None:
    a, b = dense_state(0), dense_state(1)
    pa, pb = write_model(tmp_path / "a", a), write_model(tmp_path / "b", b)
    child = _write_as_is(tmp_path / "child", _gptq_style(a))  # a's embeddings, head and norms, packed matrices
    r = scan(str(child), parents=[str(pa), str(pb)], budget_mb=1)
    assert r.relation == "inconclusive" and r.method is None and r.parents == []
    assert "most matrices as packed integers" in r.notes[0] and f"would say copy of {pa}" in r.notes[0]
    assert any("stores 21 weight(s) as packed integers" in n for n in r.notes)


def test_a_few_packed_weights_leave_the_verdict_standing_with_a_note(tmp_path: Path) -> None:
    a, b = dense_state(0), dense_state(1)
    pa, pb = write_model(tmp_path / "a", a), write_model(tmp_path / "b", b)
    child = _write_as_is(tmp_path / "child", _gptq_style(a, layers={0}))  # layers 1 and 2 stay float
    r = scan(str(child), parents=[str(pa), str(pb)], budget_mb=1)
    assert r.relation == "copy" and [p.ref for p in r.parents] == [str(pa)]
    assert any("stores 7 weight(s) as packed integers" in n for n in r.notes)


def test_bitsandbytes_style_uint8_weights_count_as_packed(tmp_path: Path) -> None:
    a, b = dense_state(0), dense_state(1)
    pa, pb = write_model(tmp_path / "a", a), write_model(tmp_path / "b", b)
    state = {
        n: (torch.randint(0, 255, (w.numel() // 2, 1), dtype=torch.uint8) if n.endswith("_proj.weight") else w)
        for n, w in a.items()
    }
    state.update({n + ".absmax": torch.rand(w.numel() // 64) for n, w in a.items() if n.endswith("_proj.weight")})
    child = _write_as_is(tmp_path / "child", state)
    r = scan(str(child), parents=[str(pa), str(pb)], budget_mb=1)
    assert r.relation == "inconclusive", r.notes
    assert any("stores 21 weight(s) as packed integers" in n for n in r.notes)


@pytest.mark.slow
def test_a_sampled_scan_of_a_gptq_child_asks_for_a_full_one(model_zoo) -> None:
    p = {n: str(model_zoo.path(n)) for n in ("llama_gptq", "llama_a", "llama_b")}
    r = scan(p["llama_gptq"], [p["llama_a"], p["llama_b"]])
    assert r.relation == "inconclusive"
    assert "a sampled scan does not decode (run with --full" in r.notes[0]
    assert any("stores 14 weight(s) as packed integers (gptq)" in n for n in r.notes)


@pytest.mark.slow
def test_a_full_scan_of_a_packed_sibling_says_finetune_not_quantized(model_zoo) -> None:
    # llama_b, packed: against llama_a and the base only, its own lineage is a fine-tune of the base
    p = {n: str(model_zoo.path(n)) for n in ("llama_b_gptq", "llama_a", "llama_base")}
    r = scan(p["llama_b_gptq"], [p["llama_a"]], base=p["llama_base"], full=True)
    assert (r.relation, [x.ref for x in r.parents]) == ("finetune", [p["llama_base"]]), r.notes
    assert "no candidate matches it within 0.25 relative error" in r.notes[0]


@pytest.mark.slow
def test_an_awq_copy_with_rescaled_channels_is_quantized_and_says_how_far_the_scales_moved_it(model_zoo) -> None:
    p = {n: str(model_zoo.path(n)) for n in ("llama_awq_scaled", "llama_a", "llama_b", "llama_base")}
    r = scan(p["llama_awq_scaled"], [p["llama_a"], p["llama_b"], p["llama_base"]], full=True)
    assert (r.relation, [x.ref for x in r.parents]) == ("quantized", [p["llama_a"]]), r.notes
    note = next(n for n in r.notes if "input channels were rescaled" in n)
    before, after = map(
        float, re.search(r"relative error to \S+ ([\d.]+) before rescaling, ([\d.]+) after", note).groups()
    )
    assert before > 0.25 > 0.12 > after  # beyond 4-bit noise as stored, within it once rescaled
    assert "rows rescaled too in 2" in note  # up_proj's rows carry down_proj's inverse scales


@pytest.mark.slow
def test_rescaled_channels_that_nothing_undoes_are_not_a_copy(model_zoo) -> None:
    # The same scales, but the norms and up_proj rows left as they were: the model computes
    # something else, however well free scales fit.
    p = {n: str(model_zoo.path(n)) for n in ("llama_awq_unfolded", "llama_a", "llama_b", "llama_base")}
    r = scan(p["llama_awq_unfolded"], [p["llama_a"], p["llama_b"], p["llama_base"]], full=True)
    assert r.relation == "finetune" and [x.ref for x in r.parents] == [p["llama_a"]]
    assert any("changes what the model computes" in n for n in r.notes), r.notes


@pytest.mark.slow
def test_a_sampled_scan_of_a_rescaled_awq_copy_still_asks_for_a_full_one(model_zoo) -> None:
    p = {n: str(model_zoo.path(n)) for n in ("llama_awq_scaled", "llama_a", "llama_b")}
    r = scan(p["llama_awq_scaled"], [p["llama_a"], p["llama_b"]])
    assert r.relation == "inconclusive" and "run with --full" in r.notes[0]


@pytest.mark.slow
def test_a_gptq_child_through_the_hub_is_decoded_in_full(localhub, model_zoo) -> None:
    for name in ("llama_gptq", "llama_a", "llama_b"):
        localhub.add_repo(f"acme/{name}", model_zoo.path(name))
    r = scan("acme/llama_gptq", ["acme/llama_a", "acme/llama_b"], endpoint=localhub.url, full=True)
    assert r.relation == "quantized" and [x.ref for x in r.parents] == ["acme/llama_a"]
    assert r.tensors == 21  # 14 decoded projections, embeddings, head, norms


def test_a_broken_packed_child_is_a_clear_error_in_full(tmp_path: Path) -> None:
    from provbot.detectors.errors import WeightFormatError
    from tests.support.packing import gptq_state

    a = {k: v for k, v in dense_state(0).items() if k.startswith("layers.0.self_attn")}
    pa = write_model(tmp_path / "a", a)
    state, qconfig = gptq_state(a)
    state["layers.0.self_attn.q_proj.g_idx"] = torch.full_like(state["layers.0.self_attn.q_proj.g_idx"], 9)
    child = _write_as_is(tmp_path / "child", state)
    (child / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": qconfig}))
    with pytest.raises(WeightFormatError, match="q_proj.g_idx: group index outside"):
        scan(str(child), parents=[str(pa)], full=True)
