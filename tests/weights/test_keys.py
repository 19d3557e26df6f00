"""Canonical tensor names and their classification."""

from __future__ import annotations

import pytest

from detectors.errors import WeightFormatError
from detectors.weights.keys import TensorKind, align_tied_heads, canonical_name, canonical_tensors, classify


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("model.layers.0.self_attn.q_proj.weight", "layers.0.self_attn.q_proj.weight"),
        ("layers.0.self_attn.q_proj.weight", "layers.0.self_attn.q_proj.weight"),
        ("language_model.model.layers.1.mlp.up_proj.weight", "layers.1.mlp.up_proj.weight"),
        ("transformer.wte.weight", "wte.weight"),
        ("model.lm_head.weight", "lm_head.weight"),
        ("output.weight", "lm_head.weight"),
        ("model.norm.weight", "norm.weight"),
        ("model.", "model."),  # nothing left after the prefix: keep as is
    ],
)
def test_canonical_name(raw, canonical):
    assert canonical_name(raw) == canonical


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("layers.3.self_attn.k_proj.weight", TensorKind(3, "attention")),
        ("layers.3.self_attn.q_norm.weight", TensorKind(3, "norm")),
        ("layers.3.post_attention_layernorm.weight", TensorKind(3, "norm")),
        ("layers.3.mlp.down_proj.weight", TensorKind(3, "mlp")),
        ("layers.3.mlp.gate.weight", TensorKind(3, "router")),
        ("layers.3.block_sparse_moe.gate.weight", TensorKind(3, "router")),
        ("layers.3.mlp.shared_expert_gate.weight", TensorKind(3, "router")),
        ("layers.3.mlp.shared_expert.up_proj.weight", TensorKind(3, "mlp")),
        ("layers.3.mlp.experts.12.up_proj.weight", TensorKind(3, "expert", 12)),
        ("layers.3.block_sparse_moe.experts.2.w1.weight", TensorKind(3, "expert", 2)),
        ("layers.3.mlp.experts.gate_up_proj", TensorKind(3, "expert")),
        ("embed_tokens.weight", TensorKind(None, "embedding")),
        ("lm_head.weight", TensorKind(None, "head")),
        ("norm.weight", TensorKind(None, "norm")),
        ("h.2.attn.c_attn.weight", TensorKind(2, "attention")),
        ("h.2.mlp.c_fc.weight", TensorKind(2, "mlp")),
        ("h.2.ln_1.weight", TensorKind(2, "norm")),
        ("encoder.layer.4.attention.self.query.weight", TensorKind(4, "attention")),
        ("encoder.layer.4.intermediate.dense.weight", TensorKind(4, "mlp")),
        ("encoder.layer.4.output.dense.weight", TensorKind(4, "mlp")),
        ("encoder.layer.4.output.LayerNorm.weight", TensorKind(4, "norm")),
        ("embeddings.LayerNorm.weight", TensorKind(None, "norm")),
        ("embeddings.word_embeddings.weight", TensorKind(None, "embedding")),
        ("pooler.dense.weight", TensorKind(None, "other")),
    ],
)
def test_classify(name, kind):
    assert classify(name) == kind


def test_classify_by_template_agrees_with_the_rules_for_every_layer_and_expert_number():
    from detectors.weights import keys

    # The first name of a template sets it up (layer 0, expert 0: equal numbers), its siblings reuse it.
    names = [f"layers.{layer}.mlp.experts.{e}.{p}.weight" for layer in (0, 7, 12) for e in (0, 12, 3) for p in ("w1", "w4", "up_proj")]
    names += [f"h.{layer}.ln_{i}.weight" for layer in (0, 5) for i in (1, 2)] + ["layers.2.mlp.0.weight", "layers.9.mlp.3.weight"]
    keys._TEMPLATES.clear()
    classify.cache_clear()
    assert [classify(n) for n in names] == [keys._classify(n) for n in names]
    assert classify("layers.12.mlp.experts.3.w4.weight") == TensorKind(12, "expert", 3)


def test_colliding_names_are_a_format_error():
    with pytest.raises(WeightFormatError, match="both map to 'norm.weight'"):
        canonical_tensors({"model.norm.weight": 1, "norm.weight": 2}, "acme/m")


def test_tied_head_alias_only_when_another_model_has_a_head():
    tied = {"embed_tokens.weight": "E"}
    assert align_tied_heads({"a": tied, "b": tied}) == {"a": tied, "b": tied}
    out = align_tied_heads({"a": tied, "b": {"embed_tokens.weight": "E2", "lm_head.weight": "H"}})
    assert out["a"]["lm_head.weight"] == "E" and out["b"]["lm_head.weight"] == "H"
