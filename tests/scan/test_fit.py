"""Unit tests of the statistics on synthetic vectors (no models needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from provbot.detectors.weights.fit import (
    aggregate,
    fit_tensor,
    pearson,
    robust_sd,
    stouffer,
    stouffer_columns,
    tensor_stats,
)
from provbot.detectors.weights.merge_methods import slerp_t


def _vecs(n: int = 4096, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, generator=g)
    a = base + 0.1 * torch.randn(n, generator=g)
    b = base + 0.1 * torch.randn(n, generator=g)
    return base, a, b, g


def test_exact_linear_merge_recovers_weights_and_r2():
    base, a, b, _ = _vecs()
    st = tensor_stats(0.6 * a + 0.4 * b, [a, b, base])
    f = fit_tensor(st, ref=2)
    assert np.allclose(f.weights, [0.6, 0.4, 0.0], atol=1e-5)
    assert f.r2 == pytest.approx(1.0, abs=1e-9)
    assert f.t[0] > 1e3  # the rounding floor keeps z large and finite
    assert math.isfinite(f.t[0])


def test_residual_does_not_depend_on_reference_only_r2_denominator_does():
    base, a, b, g = _vecs(seed=1)
    child = base + 0.5 * (a - base) + 0.05 * torch.randn(4096, generator=g)
    st = tensor_stats(child, [a, b, base])
    fits = [fit_tensor(st, ref=r) for r in range(3)]
    for f in fits[1:]:
        assert f.rss == pytest.approx(fits[0].rss, rel=1e-6)
        assert np.allclose(f.weights, fits[0].weights, atol=1e-6)
    assert len({round(f.delta_ss, 3) for f in fits}) == 3


def test_sibling_delta_is_poorly_explained():
    base, a, _b, g = _vecs(seed=2)
    sibling = base + 0.1 * torch.randn(4096, generator=g)  # independent delta from the same base
    f = fit_tensor(tensor_stats(sibling, [a, base]), ref=1)
    assert f.r2 < 0.05


def test_stats_are_additive_over_chunks():
    base, a, b, _ = _vecs(seed=3)
    child = 0.3 * a + 0.7 * b
    whole = tensor_stats(child, [a, b, base])
    parts = tensor_stats(child[:1000], [a[:1000], b[:1000], base[:1000]]) + tensor_stats(
        child[1000:], [a[1000:], b[1000:], base[1000:]]
    )
    assert np.allclose(whole.gram, parts.gram) and np.array_equal(whole.eq, parts.eq) and whole.n == parts.n


def test_bf16_cast_counts_as_equal():
    _, a, _, _ = _vecs(seed=4)
    child = a.to(torch.bfloat16).to(torch.float32)
    st = tensor_stats(child, [a], child_dtype=torch.bfloat16)
    assert st.eq[0] == st.n
    assert tensor_stats(child, [a]).eq[0] < st.n / 2  # without the dtype it is not an exact match


def test_pearson_of_independent_vectors_is_near_zero():
    g = torch.Generator().manual_seed(5)
    st = tensor_stats(torch.randn(8192, generator=g), [torch.randn(8192, generator=g)])
    assert abs(pearson(st)[0]) < 0.05


def test_aggregate_ci_covers_weight_and_spread_is_robust():
    base, a, b, g = _vecs(seed=6)
    fits = []
    for _ in range(12):
        noise = 0.01 * torch.randn(4096, generator=g)
        fits.append(fit_tensor(tensor_stats(0.6 * a + 0.4 * b + noise, [a, b, base]), ref=2))
    agg = aggregate(fits, 3)
    assert agg.ci[0, 0] <= 0.6 <= agg.ci[0, 1]
    assert agg.spread[0] < 0.02
    assert robust_sd(np.array([1.0, 1.0, 1.0, 50.0])) == 0.0


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_slerp_t_inverts_the_coefficient_ratio(t):
    theta = 0.6
    s0, s1 = math.sin((1 - t) * theta) / math.sin(theta), math.sin(t * theta) / math.sin(theta)
    assert slerp_t(s0, s1, theta) == pytest.approx(t, abs=1e-6)


def test_slerp_t_over_arrays_is_element_wise_with_the_degenerate_cases():
    s0, s1, theta = (
        np.array([0.7, 0.5, 0.0, -1.0, 0.4]),
        np.array([0.3, 0.5, 0.0, 2.0, 0.6]),
        np.array([0.5, 0.2, 0.3, 0.3, 0.0]),
    )
    got = slerp_t(s0, s1, theta)
    assert list(got) == [slerp_t(float(a), float(b), float(c)) for a, b, c in zip(s0, s1, theta)]
    assert list(got[2:]) == [0.5, 1.0, 0.6]  # no coefficients, a negative one, no angle: the clipped linear share


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
def test_batched_stats_equal_one_at_a_time_and_direct_counts(dtype):
    from provbot.detectors.weights.fit import batch_stats

    rows = []
    for seed in (7, 8, 9):
        base, a, b, _ = _vecs(seed=seed)
        child = torch.where(torch.arange(4096) % 3 == 0, base, 0.6 * a + 0.4 * b)
        if dtype is not None:
            child = child.to(dtype).to(torch.float32)
        rows.append((child, [a, b, base]))
    together = batch_stats(
        torch.stack([c for c, _ in rows]), [torch.stack([ps[j] for _, ps in rows]) for j in range(3)], dtype
    )
    for (child, ps), x in zip(rows, together):
        y = tensor_stats(child, ps, dtype)
        assert np.allclose(x.gram, y.gram) and np.array_equal(x.eq, y.eq) and x.n_new == y.n_new
        assert np.allclose(x.gram_new, y.gram_new) and np.allclose(x.absdiff_eq, y.absdiff_eq)
        assert np.allclose(x.absdiff_ne, y.absdiff_ne) and np.array_equal(x.eq_big, y.eq_big)

        # Direct counts: the base-copied third of the elements is equal to the base.
        def equal(p):
            if dtype is None:
                return (child - p).abs() <= 4 * 2.0**-24 * p.abs()
            return child == p.to(dtype).to(torch.float32)

        same = [equal(p) for p in ps]
        assert x.eq[2] == int(same[2].sum()) >= 4096 // 3
        # The new elements (equal to no candidate) and their Gram, directly.
        new = ~(same[0] | same[1] | same[2])
        v = torch.stack([child, *ps]).double()[:, new]
        assert x.n_new == int(new.sum()) and np.allclose(x.gram_new, (v @ v.T).numpy())


def test_long_tensors_are_processed_in_chunks_with_the_same_result(monkeypatch):
    import provbot.detectors.weights.fit as fit

    base, a, b, _ = _vecs(n=10_000, seed=8)
    child = torch.where(torch.arange(10_000) % 4 == 0, base, 0.6 * a + 0.4 * b)
    whole = fit.tensor_stats(child, [a, b, base])
    monkeypatch.setattr(fit, "STATS_CHUNK", 3000)
    chunked = fit.tensor_stats(child, [a, b, base])
    assert np.allclose(whole.gram, chunked.gram) and np.array_equal(whole.eq, chunked.eq)
    assert np.allclose(whole.gram_new, chunked.gram_new) and whole.n_new == chunked.n_new


@pytest.mark.parametrize("n", [3 * 2**20 + 123, 100_003])  # a large chunk; a small expert-sized tensor
def test_streamed_full_mode_stats_match_the_exact_ones(n):
    """--full's fast statistics: Gram from every element (blocked float32 products of deltas), the
    sparse-merge counts from a 1/stride subsample scaled up; weights and R^2 must match the exact
    float64 path, and the shares must be unbiased estimates."""
    import torch

    from provbot.detectors.weights.fit import batch_stats, tensor_stats

    g = torch.Generator().manual_seed(5)
    base = torch.randn(n, generator=g).bfloat16().float()
    tuned = (base + 0.05 * torch.randn(n, generator=g)).bfloat16().float()
    child = (0.6 * tuned + 0.4 * base).bfloat16().float()
    fast = batch_stats(child[None], [tuned[None], base[None]], torch.bfloat16, torch.device("cpu"), stride=64)[0]
    exact = tensor_stats(child, [tuned, base], torch.bfloat16, torch.device("cpu"))
    assert fast.n == exact.n
    for ref in (0, 1):
        f, e = fit_tensor(fast, ref), fit_tensor(exact, ref)
        assert np.allclose(f.weights, e.weights, atol=1e-5)
        assert abs(f.r2 - e.r2) < 1e-5
    # Shares from a 1/64 subsample (1,563 elements of the small tensor): ~4 standard errors.
    assert np.allclose(fast.eq / fast.n, exact.eq / exact.n, atol=0.02)
    assert abs(fast.sparse_share(1) - exact.sparse_share(1)) < 0.02


def test_batched_full_mode_stats_equal_one_at_a_time():
    import torch

    from provbot.detectors.weights.fit import FULL_SPARSE_STRIDE, batch_stats

    g = torch.Generator().manual_seed(9)
    items = []
    for _ in range(3):
        base = torch.randn(70_001, generator=g)
        other = base + 0.1 * torch.randn(70_001, generator=g)
        items.append((0.3 * base + 0.7 * other, [other, base]))
    stride = FULL_SPARSE_STRIDE
    together = batch_stats(
        torch.stack([c for c, _ in items]),
        [torch.stack([ps[j] for _, ps in items]) for j in range(2)],
        torch.float32,
        torch.device("cpu"),
        stride=stride,
    )
    for (c, ps), st in zip(items, together):
        alone = batch_stats(c[None], [p[None] for p in ps], torch.float32, torch.device("cpu"), stride=stride)[0]
        # float32 block products: summation order may differ with the batch, so raw entries agree to ~1e-7
        assert np.allclose(st.gram, alone.gram, rtol=1e-6) and np.allclose(st.eq, alone.eq)
        assert np.allclose(fit_tensor(st, 1).weights, [0.7, 0.3], atol=1e-5)
    with pytest.raises(ValueError):
        batch_stats(torch.stack([items[0][0]] * 2), [items[0][1][0][None], items[0][1][1][None]])


@pytest.mark.slow
def test_compiled_gram_kernel_matches_eager():
    """The torch.compile'd CPU kernel (used by big --full scans) gives the eager path's Gram."""
    from provbot.detectors.weights import kernels

    g = torch.Generator().manual_seed(3)
    base = torch.randn(4, 3 * 4096 + 17, generator=g)
    xs = [(base + 0.01 * torch.randn(base.shape, generator=g)).bfloat16(), base.bfloat16(), (base + 0.02).half()]
    eager = kernels.block_gram(xs)
    compiled = kernels.block_gram(xs, compiled=True)
    assert not kernels.compile_failed(), "the kernel failed to compile"
    for e, c in zip(eager, compiled):
        assert torch.allclose(e, c, rtol=1e-6, atol=1e-6)


def test_column_statistics_of_a_group_equal_the_one_column_formulas():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(9, 3)) * 4
    z[2, 0], z[5, 0], z[:, 2] = np.nan, np.inf, np.nan  # non-finite ones left out; a column of none gives 0
    assert np.allclose(stouffer_columns(z), [stouffer(z[:, i]) for i in range(3)], rtol=1e-12, atol=0)
    assert stouffer_columns(z)[2] == 0.0
    w = rng.normal(size=(9, 3))
    med = np.median(w, axis=0)
    assert np.allclose(
        1.4826 * np.median(np.abs(w - med), axis=0), [robust_sd(w[:, i]) for i in range(3)], rtol=1e-12, atol=0
    )
