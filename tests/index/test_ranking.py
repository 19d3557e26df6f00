"""Ranking maths on synthetic sketches: NNLS, base choice, shortlist, delta fit."""

from __future__ import annotations

import numpy as np
import pytest

from provbot.bot.index.ranking import fit_deltas, nnls, pick_base, shortlist


def test_nnls_matches_brute_force_on_small_problems() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.normal(size=(4, 30))
        y = rng.normal(size=30)
        w = nnls(x @ x.T, x @ y)
        assert (w >= 0).all()
        best = min(
            (np.sum((y - ws @ x) ** 2), tuple(ws))
            for mask in range(16)
            for idx in [[i for i in range(4) if mask >> i & 1]]
            for ws in [_lsq_on(x, y, idx)]
            if (ws >= -1e-12).all()
        )
        assert np.sum((y - w @ x) ** 2) == pytest.approx(best[0], rel=1e-6, abs=1e-9)


def _lsq_on(x: np.ndarray, y: np.ndarray, idx: list[int]) -> np.ndarray:
    w = np.zeros(len(x))
    if idx:
        w[idx] = np.linalg.lstsq(x[idx].T, y, rcond=None)[0]
    return w


def family(rng: np.random.Generator, n_ft: int = 30, dim: int = 4000, shared: float = 0.0):
    base = rng.normal(0, 0.02, dim)
    common = rng.normal(0, 1e-3, dim)
    fts = np.stack([base + shared * common + rng.normal(0, 1e-3, dim) for _ in range(n_ft)])
    return base, fts


def test_fit_finds_merge_weights_and_base_share() -> None:
    rng = np.random.default_rng(2)
    base, fts = family(rng)
    child = base + 0.6 * (fts[3] - base)  # Rio-like: 0.6 fine-tune + 0.4 base
    fit = fit_deltas(child, fts, base)
    assert fit.weights[3] == pytest.approx(0.6, abs=1e-6)
    assert sum(fit.weights) == pytest.approx(0.6, abs=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)


def test_sibling_fine_tune_gets_no_weight() -> None:
    rng = np.random.default_rng(3)
    base, fts = family(rng)
    sibling = base + rng.normal(0, 1e-3, len(base))
    fit = fit_deltas(sibling, fts, base)
    assert fit.r2 < 0.1
    assert max(fit.shares) < 0.02


def test_copy_of_base_has_zero_delta() -> None:
    rng = np.random.default_rng(4)
    base, fts = family(rng)
    assert fit_deltas(base.copy(), fts, base).delta_norm == 0.0


def test_pick_base_prefers_declared_then_median() -> None:
    rng = np.random.default_rng(5)
    base, fts = family(rng, n_ft=15)
    rows = np.vstack([fts[:7], base[None], fts[7:]]).astype(np.float32)
    child = (0.5 * fts[0] + 0.5 * fts[1]).astype(np.float32)
    assert pick_base(child, rows, []) == 7  # the median of fine-tunes is their base
    assert pick_base(child, rows, [2]) == 2  # a declared base wins


def test_shortlist_finds_parents_despite_a_strong_shared_direction() -> None:
    """Fine-tunes on similar data share a direction; merges of many of them out-correlate the true
    parents. The matching pursuit still puts both parents on the shortlist."""
    rng = np.random.default_rng(6)
    base, fts = family(rng, n_ft=60, shared=3.0)
    merges = np.stack([fts[rng.choice(60, 8, replace=False)].mean(axis=0) for _ in range(60)])
    rows = np.vstack([base[None], fts, merges]).astype(np.float32)
    child = (0.5 * fts[10] + 0.5 * fts[20]).astype(np.float32)
    d, c = rows - rows[0], child - rows[0]
    corr = d @ c / (np.linalg.norm(d, axis=1) * np.linalg.norm(c) + 1e-30)
    corr[0] = -np.inf
    assert not {11, 21} <= set(np.argsort(-corr)[:4].tolist())  # plain correlation misses a parent
    short = shortlist(child, rows, 0, k=4)
    assert {11, 21} <= {i for i, _ in short}
