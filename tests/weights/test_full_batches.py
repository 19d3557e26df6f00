"""Full reads in batches (one range per batch), pooled statistics, thinned sampled plans, GC pausing."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from provbot.detectors.weights.fit import tensor_stats
from provbot.detectors.weights.full_stats import FullStatsAccumulator
from provbot.detectors.weights.keys import classify
from provbot.detectors.weights.reader import canonical_models, iter_full_batches
from provbot.detectors.weights.safetensors_format import TensorMeta
from provbot.detectors.weights.sampling import plan_sample
from provbot.detectors.weights.sources import LocalSource
from tests.weights.builders import moe_state, write_model


def test_a_batch_of_same_sized_tensors_is_one_read_per_model(tmp_path):
    state = moe_state(seed=3, layers=2, experts=16)
    srcs = [
        LocalSource(write_model(tmp_path / n, {k: v + i for k, v in state.items()}, dtype=torch.bfloat16))
        for i, n in enumerate(("a", "b"))
    ]
    plan = plan_sample(canonical_models(srcs), None, full=True)
    before = [s.requests for s in srcs]
    batches = list(iter_full_batches(srcs, plan, device="cpu"))
    reads = [s.requests - b for s, b in zip(srcs, before)]
    # Every expert matrix of a layer has one size: 48 per layer arrive in one batch.
    assert max(len(b.tensors) for b in batches) >= 48
    assert reads == [len(batches)] * 2  # one contiguous read per batch and model
    assert sum(len(b.tensors) for b in batches) == len(plan.tensors)
    for b in batches:
        assert b.values[srcs[0].ref].dtype == torch.bfloat16  # the storage dtype, not float32
        for i, t in enumerate(b.tensors):
            want = state[t.name].reshape(-1)[b.start : b.stop].bfloat16()
            assert torch.equal(b.values[srcs[0].ref][i], want), t.name


def _merge_family(tmp_path, seed: int):
    """A 0.6/0.4 float32 merge of two small MoEs on disk: (states by role, sources child-first)."""
    a = moe_state(seed=seed, layers=3, experts=4)
    b = {k: v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(seed)) for k, v in a.items()}
    states = {"c": {k: 0.6 * a[k] + 0.4 * b[k] for k in a}, "a": a, "b": b}
    return states, [LocalSource(write_model(tmp_path / n, s)) for n, s in states.items()]


def _assert_matches_tensor_by_tensor(got, states, names) -> None:
    for name in names:
        want = tensor_stats(
            states["c"][name].reshape(-1), [states[r][name].reshape(-1) for r in ("a", "b")], torch.float32
        )
        assert got[name].n == want.n, name
        assert np.allclose(got[name].gram, want.gram, rtol=1e-5, atol=1e-9), name
        assert np.allclose(got[name].sums, want.sums, rtol=1e-5, atol=1e-9), name


def test_pooled_statistics_equal_tensor_by_tensor(tmp_path):
    states, srcs = _merge_family(tmp_path, seed=4)
    plan = plan_sample(canonical_models(srcs), None, full=True)
    acc = FullStatsAccumulator([s.ref for s in srcs])
    for batch in iter_full_batches(srcs, plan, device="cpu"):
        acc.add(batch)
    names = [t.name for t in plan.tensors]
    got = dict(zip(names, acc.finish(names)))
    _assert_matches_tensor_by_tensor(
        got,
        states,
        (
            "layers.1.input_layernorm.weight",
            "layers.2.self_attn.q_proj.weight",
            "layers.0.mlp.experts.3.up_proj.weight",
        ),
    )


def test_statistics_from_reused_pool_buffers_and_chunks_equal_tensor_by_tensor(tmp_path, monkeypatch):
    import provbot.detectors.weights.full_stats as full_stats

    # Tiny pools: several flushes go through the same reused join buffer. Tiny chunks: big tensors
    # arrive in pieces whose sums are added up once, at the end.
    monkeypatch.setattr(full_stats, "POOL_ELEMENTS", 3000)
    states, srcs = _merge_family(tmp_path, seed=5)
    plan = plan_sample(canonical_models(srcs), None, full=True)
    acc = FullStatsAccumulator([s.ref for s in srcs])
    batches = list(iter_full_batches(srcs, plan, chunk_elements=1000, batch_elements=1000, device="cpu"))
    assert any(not (x.start == 0 and x.last) for x in batches)  # some tensors came in chunks
    for batch in batches:
        acc.add(batch)
    assert len(acc._scratch) == 3  # one join buffer per model, reused by every flush
    names = [t.name for t in plan.tensors]
    table = acc.finish(names[::-1])  # rows come in the order asked for
    assert len(table) == len(names)
    _assert_matches_tensor_by_tensor(dict(zip(names[::-1], table)), states, names)


def _moe_metas(layers: int, experts: int) -> dict[str, TensorMeta]:
    out = {}
    for name, v in moe_state(layers=layers, experts=experts).items():
        out[name] = TensorMeta(name, "BF16", tuple(v.shape), "m.safetensors", 0, 2 * v.numel())
    return out


def _assert_every_layer_and_role_read(plan, metas, layers: int) -> None:  # noqa: ANN001
    """One seam per layer at least, with a matrix in it; components and roles alternate across layers."""
    per_layer: dict[int, set[str]] = defaultdict(set)
    matrices: dict[int, int] = defaultdict(int)
    for t in plan.tensors:
        if t.kind.layer is not None:
            per_layer[t.kind.layer].add(t.kind.component)
            matrices[t.kind.layer] += len(t.shape) > 1
    assert len(per_layer) == layers and all(matrices[layer] for layer in range(layers))
    # Every component of the layers is read in a good share of them, not in one lucky layer...
    layer_components = {classify(n).component for n in metas if classify(n).layer is not None}
    read_in = {c: sum(c in comps for comps in per_layer.values()) for c in layer_components}
    assert min(read_in.values()) >= layers // 8, read_in
    # ... and every role somewhere (each attention projection, each expert matrix).
    roles = {t.name.split(".", 2)[2] for t in plan.tensors if t.kind.layer is not None}
    assert {f"self_attn.{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj")} <= roles
    assert {f"mlp.experts.0.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")} <= roles


def test_tight_budgets_thin_tensors_per_layer_but_keep_every_layer_and_role():
    # safetensors' own layout: tensors one after another in name order.
    metas = _laid_out(dict(sorted(moe_state(layers=40, experts=8).items())))
    models = {"child": metas, "parent": metas}
    roomy = plan_sample(models, 64 * 2**20, max_requests=None)
    tight = plan_sample(models, 200_000)
    assert len(tight.tensors) < len(roomy.tensors) / 2
    assert any("alternating across layers" in n for n in tight.notes)
    _assert_every_layer_and_role_read(tight, metas, 40)
    assert tight.planned_bytes("child") <= 200_000


def test_tight_plans_read_seams_between_file_neighbours_in_few_requests():
    from provbot.detectors.weights.byte_ranges import merge_ranges
    from provbot.detectors.weights.sampling import GAP_SHARE, SEAM_REQUESTS

    metas = _laid_out(moe_state(layers=40, experts=8))
    budget = 200_000
    plan = plan_sample({"child": metas, "parent": metas}, budget)
    assert any("seams between file neighbours" in n for n in plan.notes)
    ranges = [
        ("m.safetensors", t.metas["child"].start + 2 * a, t.metas["child"].start + 2 * b)
        for t in plan.tensors
        for a, b in t.ranges
    ]
    requests = merge_ranges(ranges, budget - plan.planned_bytes("child"))
    # Several tensors per request, about one seam per layer: at most SEAM_REQUESTS requests.
    assert len(requests) <= SEAM_REQUESTS < len(plan.tensors)
    assert plan.planned_bytes("child") <= budget * (1 - GAP_SHARE)
    _assert_every_layer_and_role_read(plan, metas, 40)
    # A candidate with layers the child lacks: those are planned from the candidate's own layout.
    deeper = plan_sample({"child": metas, "parent": _laid_out(moe_state(layers=42, experts=8))}, budget)
    assert deeper.extra and all(list(t.metas) == ["parent"] for t in deeper.extra)


def test_roomy_budgets_stay_within_the_ceiling_on_requests():
    from provbot.detectors.weights.byte_ranges import merge_ranges

    def requests(plan, budget):  # noqa: ANN001, ANN202
        ranges = [
            ("m.safetensors", t.metas["child"].start + 2 * a, t.metas["child"].start + 2 * b)
            for t in plan.tensors
            for a, b in t.ranges
        ]
        return len(merge_ranges(ranges, budget - plan.planned_bytes("child")))

    metas = _laid_out(moe_state(layers=40, experts=8))  # 1,363 tensors, 1.5 MB
    models = {"child": metas, "parent": metas}
    budget, ceiling = 1_000_000, 100  # roomy: 643 tensors (8 experts per layer) in 154 requests
    free = plan_sample(models, budget, max_requests=None)
    capped = plan_sample(models, budget, max_requests=ceiling)
    assert requests(free, budget) > ceiling >= requests(capped, budget)
    assert any(f"over the ceiling of {ceiling}" in n for n in capped.notes), capped.notes
    _assert_every_layer_and_role_read(capped, metas, 40)
    # A plan within the ceiling is left as it is; so is a budget that holds the whole model (one request).
    assert plan_sample(models, budget, max_requests=200).tensors == free.tensors
    whole = plan_sample(models, 2_000_000, max_requests=ceiling)
    assert len(whole.tensors) == len(metas) and requests(whole, 2_000_000) == 1
    # A plan of few tensors keeps every tensor, in at most max_requests // tensors runs each.
    big = {
        f"layers.{i}.mlp.up_proj.weight": TensorMeta(
            f"layers.{i}.mlp.up_proj.weight", "BF16", (1024, 1024), "m.safetensors", 8 + i * 2**21, 8 + (i + 1) * 2**21
        )
        for i in range(10)
    }
    runs = [len(t.ranges) for t in plan_sample({"child": big, "parent": big}, 4 * 2**20, max_requests=25).tensors]
    assert len(runs) == 10 and max(runs) == 2
    assert {
        len(t.ranges) for t in plan_sample({"child": big, "parent": big}, 4 * 2**20, max_requests=None).tensors
    } == {8}


def test_layers_with_room_for_more_seams_read_every_component(monkeypatch):
    from provbot.detectors.weights import sampling

    metas = _laid_out(moe_state(layers=20, experts=8))  # 263 tensors; each layer needs 3 seams for its 5 components
    monkeypatch.setattr(sampling, "SEAM_REQUESTS", 3 + 3 * 20)
    plan = plan_sample({"child": metas, "parent": metas}, 60_000)
    assert any("seams between file neighbours" in n for n in plan.notes), plan.notes
    per_layer: dict[int, set[str]] = defaultdict(set)
    for t in plan.tensors:
        if t.kind.layer is not None:
            per_layer[t.kind.layer].add(t.kind.component)
    layer_components = {classify(n).component for n in metas if classify(n).layer is not None}
    assert len(per_layer) == 20 and all(c == layer_components for c in per_layer.values())
    # With less room, every layer is still read, and the components alternate.
    monkeypatch.setattr(sampling, "SEAM_REQUESTS", 3 + 24)  # a second seam in every fifth layer
    _assert_every_layer_and_role_read(plan_sample({"child": metas, "parent": metas}, 60_000), metas, 20)


def _laid_out(state: dict[str, torch.Tensor]) -> dict[str, TensorMeta]:
    """Headers of ``state`` stored one tensor after another in model order, as a checkpoint is."""
    metas, pos = {}, 8
    for name, v in state.items():
        metas[name] = TensorMeta(name, "BF16", tuple(v.shape), "m.safetensors", pos, pos + 2 * v.numel())
        pos += 2 * v.numel()
    return metas
