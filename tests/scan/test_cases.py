"""End-to-end scans of real tiny models, fine-tunes and mergekit merges from local folders.

Tolerances: exact merges (linear, task arithmetic, SLERP, copies) must give their weights within
0.02. Sparse merges (TIES, DARE) report the average share of each parent's delta the child
carries, which per-element normalisation moves away from the configured weights: here only the
parent set is asserted; tests/scan/test_sparse_merges.py checks their weights, density and method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from provbot.detectors import scan

pytestmark = pytest.mark.slow


@dataclass
class Case:
    child: str
    parents: list[str]
    relation: str
    method: str | None
    weights: dict[str, float] = field(default_factory=dict)  # expected parents -> weight (None: any)
    tol: float = 0.02
    base: str | None = None
    full: bool = False  # packed int4 children are decoded by full reads only


CASES = [
    Case("llama_linear", ["llama_a", "llama_b", "llama_base"], "merge", "linear", {"llama_a": 0.6, "llama_b": 0.4}),
    Case(
        "llama_linear", ["llama_a", "llama_b"], "merge", "linear", {"llama_a": 0.6, "llama_b": 0.4}, base="llama_base"
    ),
    Case(
        "llama_task_arithmetic",
        ["llama_a", "llama_b", "llama_base"],
        "merge",
        "task_arithmetic",
        {"llama_a": 0.5, "llama_b": 0.3, "llama_base": 0.2},
    ),
    Case("llama_slerp", ["llama_a", "llama_b"], "merge", "slerp", {"llama_a": None, "llama_b": None}),
    Case(
        "llama_ties",
        ["llama_a", "llama_b", "llama_base"],
        "merge",
        "ties",
        {"llama_a": None, "llama_b": None, "llama_base": None},
    ),
    Case(
        "llama_dare",
        ["llama_a", "llama_b", "llama_base"],
        "merge",
        "dare",
        {"llama_a": None, "llama_b": None, "llama_base": None},
    ),
    Case("llama_passthrough", ["llama_a", "llama_b"], "merge", "passthrough", {"llama_a": 2 / 3, "llama_b": 1 / 3}),
    Case(
        "llama_frankenmerge",
        ["llama_a", "llama_b", "llama_base"],
        "merge",
        "passthrough",
        {"llama_a": 0.5, "llama_b": 0.5},
    ),
    Case(
        "llama_linear_trained",
        ["llama_a", "llama_b", "llama_base"],
        "merge",
        "linear",
        {"llama_a": 0.6, "llama_b": 0.4},
    ),
    Case(
        "llama_linear_sharded",
        ["llama_a", "llama_b", "llama_base"],
        "merge",
        "linear",
        {"llama_a": 0.6, "llama_b": 0.4},
    ),
    Case("llama_linear_renamed", ["llama_a", "llama_b"], "merge", "linear", {"llama_a": 0.6, "llama_b": 0.4}),
    Case("llama_copy", ["llama_a", "llama_base"], "copy", None, {"llama_a": 1.0}),
    Case("llama_bf16", ["llama_a", "llama_b", "llama_base"], "copy", None, {"llama_a": 1.0}),
    Case("llama_fp8", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_a": 1.0}),
    Case("llama_gptq", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_a": 1.0}, full=True),
    Case("llama_b_gptq", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_b": 1.0}, full=True),
    Case("llama_awq", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_a": 1.0}, full=True),
    Case("llama_w4a16", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_a": 1.0}, full=True),
    Case("llama_nf4", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_a": 1.0}, full=True),
    # AWQ with its per-channel input scaling folded into the norms and feeding rows (AutoAWQ's apply_scale)
    Case("llama_awq_scaled", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_a": 1.0}, full=True),
    Case("llama_b_awq_scaled", ["llama_a", "llama_base"], "finetune", None, {"llama_base": 1.0}, full=True),
    Case("llama_b_awq_scaled", ["llama_a", "llama_b", "llama_base"], "quantized", None, {"llama_b": 1.0}, full=True),
    Case("llama_awq_unfolded", ["llama_a", "llama_b", "llama_base"], "finetune", None, {"llama_a": 1.0}, full=True),
    Case("llama_awq_scaled_fp16", ["llama_a", "llama_b", "llama_base"], "finetune", None, {"llama_a": 1.0}),
    Case("llama_c", ["llama_a", "llama_base"], "finetune", None, {"llama_base": 1.0}),
    Case("llama_c", ["llama_a", "llama_b", "llama_base"], "finetune", None, {"llama_base": 1.0}),
    Case("llama_c", ["llama_a", "llama_b"], "finetune", None, {"llama_base": 1.0}, base="llama_base"),
    Case("llama_a", ["llama_base"], "finetune", None, {"llama_base": 1.0}),
    Case("llama_unrelated", ["llama_a", "llama_base"], "unrelated", None, {}),
    Case("qwen2_linear", ["qwen2_a", "qwen2_b", "qwen2_base"], "merge", "linear", {"qwen2_a": 0.6, "qwen2_b": 0.4}),
    Case("qwen2_c", ["qwen2_a"], "finetune", None, {"qwen2_base": None}, base="qwen2_base"),
    Case("qwen2_c", ["qwen2_a", "qwen2_base"], "related", None, {}),  # which one is the base? not said
    Case(
        "mixtral_linear",
        ["mixtral_a", "mixtral_b", "mixtral_base"],
        "merge",
        "linear",
        {"mixtral_a": 0.6, "mixtral_b": 0.4},
    ),
    Case("mixtral_c", ["mixtral_a", "mixtral_base"], "finetune", None, {"mixtral_base": None}),
    Case("minilm_copy", ["minilm"], "copy", None, {"minilm": 1.0}),
    Case("minilm_ft", ["minilm"], "finetune", None, {"minilm": 1.0}),
    Case("llama_vocab", ["llama_a", "llama_base"], "copy", None, {"llama_a": 1.0}),
    Case("qwen2_unrelated", ["qwen2_a", "qwen2_base"], "unrelated", None, {}),
]


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=lambda c: f"{c.child}-vs-{'+'.join(c.parents)}{'-base' if c.base else ''}{'-full' if c.full else ''}",
)
def test_scan_case(case: Case, model_zoo):
    refs = {
        name: str(model_zoo.path(name)) for name in {case.child, *case.parents, *([case.base] if case.base else [])}
    }
    result = scan(
        refs[case.child], [refs[p] for p in case.parents], base=refs[case.base] if case.base else None, full=case.full
    )
    assert (result.relation, result.method) == (case.relation, case.method), result.notes
    got = {p.ref: p for p in result.parents}
    assert set(got) == {refs[n] for n in case.weights}, result.parents
    for name, want in case.weights.items():
        p = got[refs[name]]
        assert p.ci[0] <= p.weight <= p.ci[1]
        if want is not None:
            assert p.weight == pytest.approx(want, abs=case.tol), (name, p)
    assert result.tensors > 0 and all(v > 0 for v in result.bytes_read.values())
    if case.relation == "merge" and case.method != "passthrough":
        assert result.z is not None and result.z > 10
        assert result.layers and all(layer.weights for layer in result.layers)
    if case.relation == "unrelated":
        assert result.parents == [] and abs(result.z) < 5


def test_sibling_weight_wanders_but_merge_weight_does_not(model_zoo):
    p = {n: str(model_zoo.path(n)) for n in ("llama_c", "llama_linear_trained", "llama_a", "llama_b", "llama_base")}
    sibling = scan(p["llama_c"], [p["llama_a"], p["llama_base"]])
    merged = scan(p["llama_linear_trained"], [p["llama_a"], p["llama_b"], p["llama_base"]])
    assert merged.weight_spread[p["llama_b"]] < 0.01
    assert sibling.fit_r2 < 0.3 < merged.fit_r2
    assert 0.9 < merged.fit_r2 < 0.9999  # trained afterwards: high but imperfect


def test_dare_weights_keep_their_order_and_density_is_reported(model_zoo):
    p = {n: str(model_zoo.path(n)) for n in ("llama_dare", "llama_a", "llama_b", "llama_base")}
    r = scan(p["llama_dare"], [p["llama_a"], p["llama_b"], p["llama_base"]])
    w = {x.ref: x.weight for x in r.parents}
    assert w[p["llama_a"]] > w[p["llama_b"]] > 0.3
    assert r.density is not None and 0.5 < r.density < 0.95
    assert r.base == p["llama_base"]


def test_passthrough_layer_sources(model_zoo):
    p = {n: str(model_zoo.path(n)) for n in ("llama_passthrough", "llama_a", "llama_b")}
    r = scan(p["llama_passthrough"], [p["llama_a"], p["llama_b"]])
    assert [layer.source for layer in r.layers] == [f"{p['llama_a']}:0", f"{p['llama_a']}:1", f"{p['llama_b']}:1"]


def test_small_budget_gives_same_verdict_with_fewer_bytes(model_zoo):
    p = {n: str(model_zoo.path(n)) for n in ("llama_linear_trained", "llama_a", "llama_b", "llama_base")}
    cands = [p["llama_a"], p["llama_b"], p["llama_base"]]
    small = scan(p["llama_linear_trained"], cands, budget_mb=0.03)
    whole = scan(p["llama_linear_trained"], cands, full=True)
    assert (small.relation, small.method) == (whole.relation, whole.method) == ("merge", "linear")
    assert small.bytes_read[p["llama_a"]] < whole.bytes_read[p["llama_a"]] / 5
    for a, b in zip(small.parents, whole.parents):
        assert a.ref == b.ref and a.weight == pytest.approx(b.weight, abs=0.01)


def test_nan_tensor_is_left_out_with_a_note(model_zoo, tmp_path):
    import torch

    from tests.support.models import rewrite_weights

    def poison(t):
        t["model.layers.0.self_attn.q_proj.weight"] = torch.full_like(
            t["model.layers.0.self_attn.q_proj.weight"], float("nan")
        )
        return t

    child = rewrite_weights(model_zoo.path("llama_linear"), tmp_path / "nan", poison)
    a, b = str(model_zoo.path("llama_a")), str(model_zoo.path("llama_b"))
    r = scan(str(child), [a, b])
    assert (r.relation, r.method) == ("merge", "linear")
    assert any("NaN" in n for n in r.notes)


def test_base_scanned_against_its_finetunes_is_not_a_merge(model_zoo):
    # The base is roughly the mean of its fine-tunes (delta R^2 ~0.5, weights ~0.5 each) but the
    # weights wander from tensor to tensor: related, never a merge, and neither named its parent.
    p = {n: str(model_zoo.path(n)) for n in ("llama_base", "llama_a", "llama_b", "mixtral_c", "mixtral_a", "mixtral_b")}
    r = scan(p["llama_base"], [p["llama_a"], p["llama_b"]])
    assert r.relation == "related" and r.parents == [] and {x.ref for x in r.related} == {p["llama_a"], p["llama_b"]}
    r = scan(p["mixtral_c"], [p["mixtral_a"], p["mixtral_b"]])  # sibling of both, base not given
    assert r.relation == "related" and any("--base" in n for n in r.notes)
