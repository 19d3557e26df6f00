"""Scale-invariant closeness of two matrices: fit ``child ~ diag(r) @ parent @ diag(c)``.

AWQ (and SmoothQuant) multiply a linear layer's input channels by searched scales ``s`` before
quantizing and fold ``1/s`` into whatever feeds that input (a norm, or the rows of the previous
linear layer). The quantized child's matrices are then, up to rounding noise, the parent's with
columns, and sometimes rows, rescaled. :func:`fit_scales` finds those scales by alternating least
squares (the best column scales for given row scales are a per-column ratio of sums, and back)
and reports the residual before and after.

Each half-step needs only per-column (or per-row) sums of ``child * parent`` and ``parent^2``
weighted by the other side's scales: two matrix-vector products. The fit runs on a systematic grid
of the matrix (:func:`grid`: every ``s``-th row and column, at least ``GRID_MIN`` of each kept), so a
7B model's 4096 x 11008 projection costs a 1024 x 1376 fit, and the same grid of a vector of that
length lines up with it (a norm's 4096 entries are sampled at the same indices as the columns).

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> w = torch.randn(96, 64, generator=g)
>>> c = torch.exp(0.4 * torch.randn(64, generator=g))
>>> fit = fit_scales(w * c, w)                       # columns rescaled, nothing else
>>> fit.plain_rss / fit.child_ss > 0.1, fit.rss / fit.child_ss < 1e-6
(True, True)
>>> bool(torch.allclose(torch.from_numpy(fit.log_cols).float().exp(), c, rtol=2e-3))   # float16 logs
True
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

#: Alternating steps at most: a rescaled copy converges in 2-4 (each step shrinks the error by
#: about the row-to-column coupling, small for matrices of more than a few dozen rows).
MAX_STEPS = 8
#: Stop when a step improves the residual by less than this share.
STEP_TOL = 1e-4
#: The grid keeps at least this many entries of every dimension (see :func:`grid_stride`).
GRID_MIN = 1024


@dataclass(frozen=True)
class ScaleFit:
    """The scale fit of one child matrix on one candidate's (over the grid's ``rows x cols`` elements).

    ``rss`` is ``|C - diag(r) W diag(c)|^2`` at the fitted scales, ``column_rss`` the same with
    column scales alone (``r = 1``), ``row_rss`` with row scales alone, ``plain_rss`` with none
    (``|C - W|^2``). ``log_rows`` and
    ``log_cols`` are ``log|r|`` and ``log|c|`` (row scales normalised to a geometric mean of 1);
    ``row_share`` and ``col_share`` are each row's and column's share of the child's energy
    ``sum C^2``, which turn a wrong scale into the residual it would cost. The four vectors are
    float16 (a big MoE has tens of thousands of matrices), and empty after :meth:`scalars`.
    """

    rows: int
    cols: int
    child_ss: float
    parent_ss: float
    plain_rss: float
    column_rss: float
    row_rss: float
    rss: float
    log_rows: np.ndarray
    log_cols: np.ndarray
    row_share: np.ndarray
    col_share: np.ndarray
    steps: int

    @property
    def n(self) -> int:
        return self.rows * self.cols

    @property
    def dof(self) -> int:
        """Free scales: one per row and column, less the one the two sides share."""
        return self.rows + self.cols - 1

    @property
    def has_vectors(self) -> bool:
        return len(self.log_cols) == self.cols > 0

    def rel(self, rss: float, extra: float = 0.0) -> float:
        """``sqrt((rss + extra) / |fitted|^2)`` for one of the fitted residuals (``rss``,
        ``column_rss``, ``row_rss``): relative to the rescaled parent, whose energy is
        ``|C|^2 - rss`` (a least-squares residual is orthogonal to its fit)."""
        return float(np.sqrt((rss + extra) / max(self.child_ss - rss, 1e-30 * max(self.child_ss, 1e-30))))

    def plain_rel(self) -> float:
        """``|C - W| / |W|``: the relative error with no scales."""
        return float(np.sqrt(self.plain_rss / max(self.parent_ss, 1e-300)))

    def scalars(self) -> ScaleFit:
        """This fit without its vectors (kept for candidates too far to need them)."""
        empty = np.zeros(0, dtype=np.float16)
        return replace(self, log_rows=empty, log_cols=empty, row_share=empty, col_share=empty)


def grid_stride(length: int) -> int:
    """Stride of a dimension of ``length`` in the grid: a power of two keeping >= ``GRID_MIN`` entries.

    A function of the length only, so vectors of equal length (a norm, a matrix's columns, another
    matrix's rows) are sampled at the same indices and can be compared entry by entry.

    >>> grid_stride(64), grid_stride(2047), grid_stride(4096), grid_stride(11008)
    (1, 1, 4, 8)
    """
    stride = 1
    while length // (2 * stride) >= GRID_MIN:
        stride *= 2
    return stride


def grid(x: torch.Tensor) -> torch.Tensor:
    """``x`` (1-D or 2-D) at every :func:`grid_stride`-th index of each dimension, as float32.

    >>> grid(torch.arange(6.0).reshape(2, 3)).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    index = tuple(slice(None, None, grid_stride(d)) for d in x.shape)
    return x[index].to(torch.float32).contiguous()


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))


def _explained(num: torch.Tensor, den: torch.Tensor) -> float:
    """``sum num^2 / den``: what the best scales for these sums explain of the child's energy."""
    n, d = num.double(), den.double()
    return float(torch.where(d > 0, n.square() / d.clamp_min(1e-300), torch.zeros_like(n)).sum())


def fit_scales(
    child: torch.Tensor, parent: torch.Tensor, max_steps: int = MAX_STEPS, tol: float = STEP_TOL
) -> ScaleFit:
    """Least-squares row and column scales of ``child ~ diag(r) parent diag(c)`` (2-D, same shape).

    Alternating least squares from ``r = 1``: ``c = P^T r / Q^T r^2`` and ``r = P c / Q c^2`` with
    ``P = child * parent`` and ``Q = parent^2``; each residual is ``|C|^2 - sum num^2 / den`` of
    the step just taken (exact for the scales it returns). Call it on :func:`grid` views for big
    matrices. Scales of an all-zero parent row or column are 0 (the child's energy there stays in
    the residual).
    """
    if child.dim() != 2 or child.shape != parent.shape:
        raise ValueError(
            f"fit_scales needs two matrices of one shape, got {tuple(child.shape)} and {tuple(parent.shape)}"
        )
    c_mat, w = child.to(torch.float32), parent.to(torch.float32)
    p, q = c_mat * w, w * w
    sq = c_mat * c_mat
    row_energy, col_energy = sq.sum(dim=1), sq.sum(dim=0)
    child_ss = float(row_energy.double().sum())
    parent_ss = float(q.sum(dim=1).double().sum())
    plain_rss = child_ss - 2.0 * float(p.sum(dim=1).double().sum()) + parent_ss

    def columns(r: torch.Tensor) -> tuple[torch.Tensor, float]:
        num, den = p.t().mv(r), q.t().mv(r * r)
        return _ratio(num, den), child_ss - _explained(num, den)

    row_rss = child_ss - _explained(p.sum(dim=1), q.sum(dim=1))  # row scales alone (c = 1)
    r = torch.ones(c_mat.shape[0], dtype=torch.float32, device=c_mat.device)
    c, rss = columns(r)
    column_rss, steps = rss, 0
    while steps < max_steps:
        num, den = p.mv(c), q.mv(c * c)
        r_new = _ratio(num, den)
        c_new, rss_new = columns(r_new)
        steps += 1
        if rss_new > rss:  # rounding at convergence: keep the better pair
            break
        improved = rss - rss_new
        r, c, rss = r_new, c_new, rss_new
        if improved <= tol * max(rss, 1e-30 * child_ss):
            break
    # One side's scale is free against the other's: row scales get a geometric mean of 1.
    log_r = torch.log(r.abs().clamp_min(1e-30))
    shift = log_r[r != 0].mean() if bool((r != 0).any()) else torch.zeros((), device=r.device)
    log_c = torch.log(c.abs().clamp_min(1e-30)) + shift
    total = max(child_ss, 1e-300)

    def half(x: torch.Tensor) -> np.ndarray:
        return x.clamp(-6e4, 6e4).to(torch.float16).cpu().numpy()

    return ScaleFit(
        rows=c_mat.shape[0],
        cols=c_mat.shape[1],
        child_ss=child_ss,
        parent_ss=parent_ss,
        plain_rss=max(plain_rss, 0.0),
        column_rss=max(column_rss, 0.0),
        row_rss=max(row_rss, 0.0),
        rss=max(rss, 0.0),
        log_rows=half(log_r - shift),
        log_cols=half(log_c),
        row_share=half(row_energy / total),
        col_share=half(col_energy / total),
        steps=steps,
    )
