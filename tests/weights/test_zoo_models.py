"""Real checkpoints from the shared model zoo (transformers saves, mergekit merges) read consistently.

Marked slow: building the zoo trains models (about a minute on 2 busy cores, shared with the scan
tests in one session).
"""

from __future__ import annotations

import pytest
import torch

from provbot.detectors.weights.keys import classify
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.reader import canonical_models, read_samples
from provbot.detectors.weights.sampling import plan_sample

pytestmark = pytest.mark.slow


def test_sharded_and_renamed_saves_read_identically(model_zoo):
    refs = [str(model_zoo.path(n)) for n in ("llama_linear", "llama_linear_sharded", "llama_linear_renamed")]
    srcs = [open_source(r) for r in refs]
    assert len(srcs[1].files()) > 1  # transformers really sharded it
    plan = plan_sample(canonical_models(srcs), 64 * 1024)
    assert not plan.extra and len(plan.tensors) == len(canonical_models(srcs[:1])[refs[0]])
    samples = read_samples(srcs, plan)
    for t in plan.tensors:
        assert torch.equal(samples[refs[0]][t.name], samples[refs[1]][t.name]), t.name
        assert torch.equal(samples[refs[0]][t.name], samples[refs[2]][t.name]), t.name


def test_mergekit_passthrough_extra_layer_matches_its_source_layer(model_zoo):
    child, a, b = (str(model_zoo.path(n)) for n in ("llama_passthrough", "llama_a", "llama_b"))
    srcs = [open_source(r) for r in (child, a, b)]
    plan = plan_sample(canonical_models(srcs), 64 * 1024)
    assert plan.extra and {classify(t.name).layer for t in plan.extra} == {2}
    samples = read_samples(srcs, plan)
    for t in plan.extra:
        source_layer = t.name.replace("layers.2.", "layers.1.")
        assert torch.equal(samples[child][t.name], samples[b][source_layer]), t.name
    assert torch.equal(samples[child]["layers.0.mlp.up_proj.weight"], samples[a]["layers.0.mlp.up_proj.weight"])


def test_awq_rescaling_keeps_what_the_model_computes_only_when_folded(model_zoo):
    # The zoo's AWQ-scaled models rest on this: AutoAWQ's apply_scale moves the matrices well beyond
    # int4 noise while the network computes the same logits; without the fold it computes others.
    from tests.support.models import markov_batch
    from tests.support.packing import awq_rescale

    tokens = markov_batch(1, 256, batch=2, seq=16)
    source = model_zoo.model("llama_a")
    folded, unfolded = (awq_rescale(model_zoo.model("llama_a"), seed=41, fold=f) for f in (True, False))
    with torch.no_grad():
        want, got, other = (m(input_ids=tokens).logits for m in (source, folded, unfolded))
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert (other - want).abs().max() > 0.05
    for name in ("self_attn.q_proj", "mlp.up_proj", "mlp.down_proj"):
        w, s = (getattr(m.model.layers[0], name.split(".")[0]) for m in (source, folded))
        w, s = (getattr(x, name.split(".")[1]).weight for x in (w, s))
        assert (s - w).norm() / w.norm() > 0.25, name
    norm = folded.model.layers[0].input_layernorm.weight
    assert not torch.allclose(norm, source.model.layers[0].input_layernorm.weight)
