"""The per-channel scale fit (detectors.weights.scale_fit) on synthetic matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from provbot.detectors.weights.scale_fit import GRID_MIN, fit_scales, grid, grid_stride


def _matrix(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    g = torch.Generator().manual_seed(seed)
    return 0.05 * torch.randn(rows, cols, generator=g), g


def _centred(x: np.ndarray | torch.Tensor) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean()


@pytest.mark.parametrize("rows, cols", [(96, 64), (300, 200)])
def test_row_and_column_scales_are_recovered_under_noise(rows: int, cols: int) -> None:
    w, g = _matrix(rows, cols, seed=rows)
    log_r, log_c = 0.4 * torch.randn(rows, generator=g), 0.4 * torch.randn(cols, generator=g)
    clean = torch.exp(log_r)[:, None] * w * torch.exp(log_c)[None, :]
    noise = 0.05 * clean.std() * torch.randn(rows, cols, generator=g)
    fit = fit_scales(clean + noise, w)
    # Scales are known up to one factor moved between the sides: compare centred logs.
    assert np.abs(_centred(fit.log_rows) - _centred(log_r)).max() < 0.05
    assert np.abs(_centred(fit.log_cols) - _centred(log_c)).max() < 0.05
    # What is left is the noise, less the share the rows + cols - 1 free scales absorb of it.
    expected = float(noise.square().sum()) * (1 - fit.dof / fit.n)
    assert fit.rss == pytest.approx(expected, rel=0.1)
    assert fit.plain_rss > fit.column_rss > 10 * fit.rss  # rows matter: the column fit alone falls short
    assert fit.steps <= 8


def test_an_exact_rescale_leaves_no_residual_and_column_scales_alone_need_no_row_scales() -> None:
    w, g = _matrix(64, 96, seed=1)
    c = torch.exp(0.4 * torch.randn(96, generator=g))
    fit = fit_scales(w * c, w)
    assert fit.rss <= 1e-9 * fit.child_ss and fit.column_rss <= 1e-9 * fit.child_ss
    assert np.abs(fit.log_rows.astype(np.float64)).max() < 1e-3
    assert np.allclose(np.exp(fit.log_cols.astype(np.float64)), c.numpy(), rtol=2e-3)


def test_on_an_unrelated_delta_the_free_scales_buy_only_their_share_of_the_elements() -> None:
    # A fine-tune's delta owes nothing to a rescale: the fit absorbs about (rows + cols - 1) / n of it.
    shares = []
    for seed in range(8):
        w, g = _matrix(48, 32, seed=10 + seed)
        fit = fit_scales(w + 0.3 * w.std() * torch.randn(48, 32, generator=g), w)
        shares.append((fit.plain_rss - fit.rss) / fit.plain_rss / (fit.dof / fit.n))
    assert 0.6 < float(np.median(shares)) < 1.6


def test_a_zero_parent_column_gets_a_zero_scale_and_its_energy_stays_in_the_residual() -> None:
    w, g = _matrix(32, 16, seed=3)
    w[:, 5] = 0.0
    child = w * 2.0
    child[:, 5] = 1.0
    fit = fit_scales(child, w)
    assert np.isfinite(fit.log_cols).all() and np.isfinite(fit.log_rows).all()
    assert fit.rss == pytest.approx(32.0, rel=1e-4)  # the 32 ones of column 5


def test_the_grid_samples_equal_lengths_at_equal_indices() -> None:
    assert [grid_stride(n) for n in (GRID_MIN, 2 * GRID_MIN - 1, 2 * GRID_MIN, 4096, 11008)] == [1, 1, 2, 4, 8]
    m = torch.arange(4096 * 3, dtype=torch.float32).reshape(3, 4096)
    v = torch.arange(4096, dtype=torch.float32)
    assert torch.equal(grid(m)[0], grid(v)) and grid(m).shape == (3, 1024)
    assert grid(torch.ones(4, 4, dtype=torch.bfloat16)).dtype == torch.float32


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="two matrices of one shape"):
        fit_scales(torch.ones(4, 4), torch.ones(4, 5))
    with pytest.raises(ValueError, match="two matrices of one shape"):
        fit_scales(torch.ones(4), torch.ones(4))
