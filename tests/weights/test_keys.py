"""Canonical tensor names and their classification."""

from __future__ import annotations

import pytest

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.keys import (
    TensorKind,
    align_tied_heads,
    canonical_name,
    canonical_tensors,
    classify,
    classify_many,
    kind_columns,
)


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
    from provbot.detectors.weights import keys

    # The first name of a template sets it up (layer 0, expert 0: equal numbers), its siblings reuse it.
    names = [
        f"layers.{layer}.mlp.experts.{e}.{p}.weight"
        for layer in (0, 7, 12)
        for e in (0, 12, 3)
        for p in ("w1", "w4", "up_proj")
    ]
    names += [f"h.{layer}.ln_{i}.weight" for layer in (0, 5) for i in (1, 2)] + [
        "layers.2.mlp.0.weight",
        "layers.9.mlp.3.weight",
    ]
    keys._TEMPLATES.clear()
    classify.cache_clear()
    assert [classify(n) for n in names] == [keys._classify(n) for n in names]
    assert classify("layers.12.mlp.experts.3.w4.weight") == TensorKind(12, "expert", 3)


def test_a_name_holding_the_template_mark_is_classified_by_the_rules():
    # "layers.#.x" looks like the template of "layers.1.x": it must not reuse that template's numbers.
    assert classify("layers.1.mlp.up_proj.weight") == TensorKind(1, "mlp")
    assert classify("layers.#.mlp.up_proj.weight") == TensorKind(None, "mlp")


# Names of many architectures and hostile headers: every bulk path must agree with classify().
_ODD_NAMES = [
    "layers.007.self_attn.q_proj.weight",  # leading zeros
    "layers.12345678901234567890.mlp.up_proj.weight",  # too long for the bulk columns
    "layers.3.mlp.experts.99999999999.down_proj.weight",
    "experts.4.up_proj.weight",  # an expert outside the layers
    "layers.3.mlp.experts.gate_up_proj",  # fused experts: no expert id
    "",
    "0.weight",
    "layers.1.2.weight",
    "h.0.0.weight",
]
# Any of these sends the whole list one by one.
_UNSPLITTABLE = [
    "layers.#.mlp.up_proj.weight",
    "layers.5.mlp.dówn_proj.weight",  # not ASCII
    "layers.6.mlp\n.up_proj.weight",  # a line break inside a name
]


def _zoo() -> list[str]:
    names = [
        f"layers.{layer}.mlp.experts.{e}.{p}.weight"
        for layer in range(0, 13, 3)
        for e in (0, 5, 12, 127)
        for p in ("up_proj", "w1", "w4")
    ]
    names += [
        f"layers.{layer}.{m}.weight"
        for layer in (0, 9, 10, 47)
        for m in ("self_attn.q_proj", "input_layernorm", "mlp.gate", "mlp.shared_expert.up_proj", "self_attn.q_norm")
    ]
    names += [
        f"h.{layer}.{m}"
        for layer in (0, 11)
        for m in ("ln_1.weight", "ln_2.bias", "attn.c_attn.weight", "mlp.c_fc.weight")
    ]
    names += [
        f"encoder.layer.{layer}.{m}"
        for layer in (0, 5)
        for m in ("attention.self.query.weight", "output.LayerNorm.weight")
    ]
    names += ["layers.2.w1.weight", "layers.2.w4.weight", "layers.3.w4.weight"]  # one shape, two components
    return names + ["embed_tokens.weight", "lm_head.weight", "norm.weight", "pooler.dense.weight"]


@pytest.mark.parametrize("odd", [[], _ODD_NAMES, _ODD_NAMES + _UNSPLITTABLE])
def test_bulk_classification_agrees_with_classify(odd):
    from provbot.detectors.weights import keys

    names = _zoo() + odd
    classify.cache_clear()
    keys._TEMPLATES.clear()
    keys.kind_columns.cache_clear()
    expected = [classify(n) for n in names]
    capped = [TensorKind(*(min(v, 2**62) if isinstance(v, int) else v for v in k)) for k in expected]
    assert classify_many(names) == capped
    cols = kind_columns(tuple(names))
    assert cols.layer.tolist() == [-1 if k.layer is None else k.layer for k in capped]
    assert cols.expert.tolist() == [-1 if k.expert is None else k.expert for k in capped]
    assert cols.component.tolist() == [k.component for k in expected]
    assert classify_many([]) == []
    with pytest.raises(ValueError, match="read-only"):  # shared by the cache: nobody may change them
        cols.layer[0] = 5


def test_bulk_canonical_names_agree_with_canonical_name():
    from provbot.detectors.weights import keys

    raw = [
        "model.layers.0.x",
        "model.",
        "model.model.",
        "language_model.model.layers.1.w",
        "output.weight",
        "model.output.weight",
        "transformer.h.0.attn.c_attn.weight",
        "x",
        "",
        "model.lm_head.weight",
        "embed_out.weight",
        "bert.embeddings.word_embeddings.weight",
        "modelx.y",
        "model..a",
        "backbone.",
    ]
    assert keys._canonical_names(tuple(raw)) == tuple(canonical_name(r) for r in raw)
    assert keys._canonical_names(("model.a\nb", "model.x")) == ("a\nb", "x")  # line breaks: one by one


def test_colliding_names_are_a_format_error():
    with pytest.raises(WeightFormatError, match="both map to 'norm.weight'"):
        canonical_tensors({"model.norm.weight": 1, "norm.weight": 2}, "acme/m")


def test_tied_head_alias_only_when_another_model_has_a_head():
    tied = {"embed_tokens.weight": "E"}
    assert align_tied_heads({"a": tied, "b": tied}) == {"a": tied, "b": tied}
    out = align_tied_heads({"a": tied, "b": {"embed_tokens.weight": "E2", "lm_head.weight": "H"}})
    assert out["a"]["lm_head.weight"] == "E" and out["b"]["lm_head.weight"] == "H"
