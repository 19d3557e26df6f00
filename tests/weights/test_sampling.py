"""Element positions and the stratified tensor choice."""

from __future__ import annotations

import math

import pytest
import torch

from provbot.detectors.weights.keys import classify
from provbot.detectors.weights.reader import canonical_models, iter_full, read_sample
from provbot.detectors.weights.safetensors_format import TensorMeta
from provbot.detectors.weights.sampling import MAX_RUNS, element_ranges, plan_sample
from provbot.detectors.weights.sources import LocalSource
from tests.weights.builders import dense_state, moe_state, write_model


def _meta(name: str, shape: tuple[int, ...], dtype: str = "BF16") -> TensorMeta:
    n = math.prod(shape) * (2 if dtype == "BF16" else 4)
    return TensorMeta(name, dtype, shape, "model.safetensors", 0, n)


def _metas(state: dict[str, torch.Tensor], dtype: str = "BF16") -> dict[str, TensorMeta]:
    return {k: _meta(k, tuple(v.shape), dtype) for k, v in state.items()}


@pytest.mark.parametrize(
    ("shape", "n"), [((4096, 4096), 5000), ((151936, 2048), 100_000), ((7,), 3), ((300, 300), 89_999)]
)
def test_element_ranges_are_sorted_disjoint_in_bounds_and_sized(shape, n):
    ranges = element_ranges(shape, n)
    total = math.prod(shape)
    assert sum(b - a for a, b in ranges) == n
    assert 1 <= len(ranges) <= MAX_RUNS
    assert all(0 <= a < b <= total for a, b in ranges)
    assert all(b0 <= a1 for (_, b0), (a1, _) in zip(ranges, ranges[1:]))


def test_element_ranges_depend_on_shape_only():
    assert element_ranges((1024, 512), 9000) == element_ranges([1024, 512], 9000)
    assert element_ranges((1024, 512), 9000) != element_ranges((512, 1024), 9000)
    # Spread over the whole tensor: the last run lies in the last stratum.
    ranges = element_ranges((1024, 512), 40_000)
    assert len(ranges) > 1 and ranges[-1][0] >= 1024 * 512 * (len(ranges) - 1) // len(ranges)
    assert element_ranges((10, 10), 0) == [] and element_ranges((0, 10), 5) == []


def test_dense_plan_covers_every_layer_and_component_within_budget():
    state = dense_state(layers=6)
    models = {"child": _metas(state), "parent": _metas(state, "F32")}
    plan = plan_sample(models, budget_bytes=20_000)
    names = plan.by_name()
    assert set(names) == set(state)  # every tensor, each sampled
    assert {classify(n).layer for n in names} == {None, *range(6)}
    assert {classify(n).component for n in names} == {"attention", "mlp", "norm", "embedding", "head"}
    assert plan.planned_bytes("parent") <= 20_000  # the fp32 model sets the share
    assert plan.planned_bytes("child") <= 10_000
    # Small 1-D norms are read whole; big matrices are sampled.
    assert names["layers.0.input_layernorm.weight"].whole
    assert not names["layers.0.mlp.up_proj.weight"].whole
    # Same shape -> same positions, across layers (passthrough matching needs this).
    assert names["layers.0.mlp.up_proj.weight"].ranges == names["layers.5.mlp.up_proj.weight"].ranges
    assert names["layers.0.self_attn.q_proj.weight"].ranges == names["layers.4.self_attn.o_proj.weight"].ranges


def test_moe_plan_keeps_layer_tensors_and_the_same_expert_subset():
    state = moe_state(layers=4, experts=16)
    models = {"a": _metas(state), "b": _metas(state)}
    plan = plan_sample(models, budget_bytes=40_000)
    kinds = [classify(t.name) for t in plan.tensors]
    per_layer = {}
    for k in kinds:
        per_layer.setdefault(k.layer, set()).add(k.component)
    for layer in range(4):
        assert {"attention", "router", "mlp", "norm", "expert"} <= per_layer[layer]
    assert {"embedding", "head", "norm"} <= per_layer[None]
    experts = {layer: {k.expert for k in kinds if k.layer == layer and k.expert is not None} for layer in range(4)}
    assert 1 <= len(experts[0]) < 16
    assert all(e == experts[0] for e in experts.values())  # same subset in every layer
    assert plan.experts_per_layer == len(experts[0])
    assert plan.planned_bytes("a") <= 40_000
    # A bigger budget samples more experts, up to the cap.
    bigger = plan_sample(models, budget_bytes=4_000_000)
    assert bigger.experts_per_layer > plan.experts_per_layer


def test_full_plan_reads_every_common_tensor_whole():
    state = moe_state(layers=2, experts=4)
    plan = plan_sample({"a": _metas(state), "b": _metas(state)}, budget_bytes=1000, full=True)
    assert len(plan.tensors) == len(state) and all(t.whole for t in plan.tensors)
    assert plan.budget_bytes is None


def test_moe_sample_reads_same_positions_from_both_models(tmp_path):
    state = moe_state(layers=2, experts=8)
    a = LocalSource(write_model(tmp_path / "a", state))
    b = LocalSource(write_model(tmp_path / "b", state, prefix="model.", shards=2, dtype=torch.bfloat16))
    plan = plan_sample(canonical_models([a, b]), 24_000)
    sa, sb = read_sample(a, plan), read_sample(b, plan)
    for name, t in plan.by_name().items():
        flat = state[name].reshape(-1)
        assert torch.equal(sa[name], torch.cat([flat[x:y] for x, y in t.ranges]))
        assert torch.equal(sb[name], sa[name].bfloat16().float())
    assert a.bytes_read - plan.planned_bytes(a.ref) < 20_000  # only the header on top of the plan


def test_merge_ranges_bridges_smallest_gaps_within_allowance():
    from provbot.detectors.weights.byte_ranges import merge_ranges

    ranges = [("a", 0, 10), ("a", 10, 20), ("a", 23, 30), ("a", 40, 50), ("b", 50, 60), ("a", 5, 12)]
    assert merge_ranges(ranges) == [("a", 0, 20), ("a", 23, 30), ("a", 40, 50), ("b", 50, 60)]
    assert merge_ranges(ranges, gap_bytes=3) == [("a", 0, 30), ("a", 40, 50), ("b", 50, 60)]
    assert merge_ranges(ranges, gap_bytes=13) == [("a", 0, 50), ("b", 50, 60)]  # never across files


def test_read_ranges_returns_each_requested_slice(tmp_path):
    folder = write_model(tmp_path / "m", {"w": torch.arange(100, dtype=torch.float32)})
    src = LocalSource(folder)
    m = src.tensors()["w"]
    asks = [(m.file, m.start + 40, m.start + 48), (m.file, m.start, m.start + 8), (m.file, m.start + 4, m.start + 12)]
    got = src.read_ranges(asks, gap_bytes=1000)
    assert [torch.frombuffer(bytearray(g), dtype=torch.float32).tolist() for g in got] == [[10, 11], [0, 1], [1, 2]]
    assert src.requests == 2 + 1  # header (length + body), then one bridged read


def test_extra_layers_of_a_depth_upscaled_child_are_read_at_the_same_positions(tmp_path):
    a, b = dense_state(seed=1, layers=2), dense_state(seed=2, layers=2)
    child = dict(a)  # passthrough: layers 0-1 of A, then layer 1 of B again as layer 2
    child.update({k.replace("layers.1.", "layers.2."): v for k, v in b.items() if k.startswith("layers.1.")})
    srcs = [LocalSource(write_model(tmp_path / n, s)) for n, s in (("child", child), ("a", a), ("b", b))]
    budget = 12_000
    plan = plan_sample(canonical_models(srcs), budget)
    assert all(classify(t.name).layer == 2 and list(t.metas) == [srcs[0].ref] for t in plan.extra)
    assert len(plan.extra) == 9 and not any(classify(t.name).layer == 2 for t in plan.tensors)
    assert any("also read layers [2]" in n for n in plan.notes)
    assert plan.planned_bytes(srcs[0].ref) <= 0.8 * budget  # the extra layer is within the child's budget
    samples = {s.ref: read_sample(s, plan) for s in srcs}
    child_s, b_s = samples[srcs[0].ref], samples[srcs[2].ref]
    assert "layers.2.mlp.up_proj.weight" not in b_s
    for name in ("mlp.up_proj.weight", "self_attn.q_proj.weight", "input_layernorm.weight"):
        assert torch.equal(child_s[f"layers.2.{name}"], b_s[f"layers.1.{name}"])
    # No extras when they are not wanted, or when every model has the same layers.
    assert plan_sample(canonical_models(srcs), budget, extra_layers=False).extra == []
    assert plan_sample(canonical_models(srcs[1:]), budget).extra == []
    full = plan_sample(canonical_models(srcs), None, full=True)
    assert all(c.name in full.by_name() for c in iter_full(srcs, full, device="cpu"))  # common only by default
    holders = {c.name: set(c.values) for c in iter_full(srcs, full, device="cpu", include_extra=True)}
    assert holders["layers.2.mlp.down_proj.weight"] == {srcs[0].ref}
    assert holders["layers.1.mlp.down_proj.weight"] == {s.ref for s in srcs}


def test_element_ranges_are_stable_across_processes_and_releases():
    # Stored index sketches were read at these positions: changing them silently breaks comparisons.
    assert element_ranges((1000, 1000), 10000) == [(133627, 138627), (556444, 561444)]
    assert element_ranges((4096,), 100) == [(1829, 1929)]
