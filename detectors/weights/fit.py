"""Lineage statistics: per-tensor sufficient statistics, the delta fit, and their aggregation.

Everything follows from a few numbers per tensor, accumulated once over the sampled (or, in full
mode, streamed) elements of the child ``c`` and the candidates ``P_1..P_k``:

* ``gram``: the float64 Gram matrix of ``[c, P_1, ..., P_k]`` (plus their sums, for Pearson r);
* ``eq[j]``: how many elements satisfy ``c == P_j`` exactly (after casting ``P_j`` to the child's
  storage dtype, so dtype casts count as equal);
* ``gram_ne[j]``: the Gram matrix restricted to the elements where ``c != P_j`` (TIES/DARE: the
  kept elements when ``P_j`` is the base);
* ``eq_big[j]`` / ``n_big[j]``: the same equality count restricted to *resolvable* elements, where
  some other candidate differs from ``P_j`` by more than ``RESOLVE_ULPS`` rounding steps of the
  child's dtype. A dense merge moves every such element off ``P_j``; only a sparse merge (TIES/DARE)
  leaves them on it. Without this restriction a bf16 blend of two close models looks sparse, since
  every small delta rounds back onto the base;
* ``absdiff_eq[j, i]`` / ``absdiff_ne[j, i]``: the summed ``|P_i - P_j|`` on the resolvable elements
  equal / not equal to ``P_j`` (TIES trims small deltas, DARE drops at random).

Statistics add up across chunks (``TensorStats.__add__``), which is how ``--full`` streams.

The fit: pick a reference ``R`` among the candidates (declared base, else the candidate closest to
the child) and regress ``c - R`` on ``[R, P_i - R]``. Its residual equals the residual of regressing
``c`` on all candidates (affine-hull invariance), so the raw-space coefficients (``weights``) do
not depend on ``R``; only the denominator of the delta R^2, ``|c - R|^2``, does.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> a, b = torch.randn(4096, generator=g), torch.randn(4096, generator=g)
>>> st = tensor_stats(0.6 * a + 0.4 * b, [a, b])
>>> f = fit_tensor(st, ref=0)
>>> [round(float(w), 3) for w in f.weights]
[0.6, 0.4]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

# Relative rounding step (2^-mantissa bits) of each storage dtype: floors the residual variance so
# that exact merges get a large finite z rather than infinity.
DTYPE_EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float64: 2.0**-53}


# Elements per statistics pass (float64 working copies: (k+1) x 4M x 8 bytes = 128 MiB for k = 3).
STATS_CHUNK = 4 * 2**20
# float32 elements within this many ulps count as equal (rounding of B + (A - B) and the like).
EQUAL_ULPS = 4
# An element is resolvable for sparse-merge counting when some candidate's delta exceeds this many
# rounding steps of the child's dtype: a dense merge with weight >= 1/32 must then move it.
RESOLVE_ULPS = 16
# Full mode: sparse-merge statistics from every FULL_SPARSE_STRIDE-th element of a streamed chunk
# (see streamed_stats), and never from fewer than MIN_SUBSAMPLE elements.
FULL_SPARSE_STRIDE = 128
MIN_SUBSAMPLE = 4096
# Elements per float32 partial Gram product in full mode (summed in float64): short enough that
# float32 accumulation error stays far below the deltas' own precision.
GRAM_BLOCK = 4096


def pick_device(setting: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


@dataclass
class TensorStats:
    """Sufficient statistics of one tensor (additive over element chunks)."""

    n: int
    gram: np.ndarray  # (k+1, k+1) over [child, candidates...]
    sums: np.ndarray  # (k+1,)
    eq: np.ndarray  # (k,) count of child == candidate j
    gram_ne: np.ndarray  # (k, k+1, k+1): Gram on elements where child != candidate j
    absdiff_eq: np.ndarray  # (k, k): sum |P_i - P_j| where child == P_j (resolvable elements)
    absdiff_ne: np.ndarray  # (k, k): sum |P_i - P_j| where child != P_j (resolvable elements)
    gram_new: np.ndarray  # (k+1, k+1): Gram on elements where the child differs from every candidate
    n_new: int
    eps: float = 2.0**-24  # relative rounding step of the child's storage dtype
    eq_big: np.ndarray | None = None  # (k,) child == P_j among elements resolvable for j
    n_big: np.ndarray | None = None  # (k,) elements resolvable for j

    @property
    def k(self) -> int:
        return len(self.eq)

    def __add__(self, other: TensorStats) -> TensorStats:
        return TensorStats(
            self.n + other.n, self.gram + other.gram, self.sums + other.sums, self.eq + other.eq,
            self.gram_ne + other.gram_ne, self.absdiff_eq + other.absdiff_eq, self.absdiff_ne + other.absdiff_ne,
            self.gram_new + other.gram_new, self.n_new + other.n_new, max(self.eps, other.eps),
            _add(self.eq_big, other.eq_big), _add(self.n_big, other.n_big),
        )

    def sparse_share(self, j: int) -> float:
        """Share of the elements resolvable for candidate ``j`` on which the child equals ``P_j``."""
        if self.eq_big is None or self.n_big is None:
            return float(self.eq[j]) / max(self.n, 1)
        return float(self.eq_big[j]) / max(float(self.n_big[j]), 1.0)


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else a + b


def tensor_stats(child: torch.Tensor, candidates: Sequence[torch.Tensor], child_dtype: torch.dtype | None = None,
                 device: torch.device | None = None) -> TensorStats:
    """Statistics of one tensor (or one chunk of it) from 1-D float tensors at the same positions.

    ``child_dtype`` is the child's storage dtype: candidates are rounded to it before the exact
    equality count, so a bf16 re-save of a float32 model counts as equal everywhere.
    """
    device = device or child.device
    n = child.numel()
    if n > STATS_CHUNK:
        # Bounded memory in --full mode: the float64 working copies are (k+1) x chunk, not x tensor.
        parts = [tensor_stats(child[a:a + STATS_CHUNK], [p[a:a + STATS_CHUNK] for p in candidates], child_dtype, device)
                 for a in range(0, n, STATS_CHUNK)]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total
    if device.type == "cpu":
        # Samples are small: numpy avoids torch's per-op thread-pool overhead (milliseconds per op
        # on a busy machine), which made this the slowest step of a scan.
        return _stats_numpy(child, candidates, child_dtype)
    return _stats_torch(child, candidates, child_dtype, device)


def streamed_stats(child: torch.Tensor, candidates: Sequence[torch.Tensor], child_dtype: torch.dtype | None = None,
                   device: torch.device | None = None, stride: int = FULL_SPARSE_STRIDE) -> TensorStats:
    """Full-mode statistics of one streamed chunk, at close to memory speed.

    The Gram matrix uses every element: per block of ``GRAM_BLOCK`` elements one float32 product of
    the rows ``[c - P_1, P_1, P_i - P_1]``, the block results summed in float64. Differences of close
    models are exact in float32, so the delta energies the fit works from keep their precision, and
    the large ``P_1`` terms cancel algebraically when the fit changes basis. The sparse-merge
    statistics (equality counts, masked Grams) come from a systematic ``1/stride`` subsample, scaled
    up by ``n / n_sub``: shares and fits on kept elements are estimated from millions of elements
    per tensor, while the passes they need no longer dominate a full read. Chunks too small to
    subsample use :func:`tensor_stats` unchanged; smaller ones subsample with a shorter stride so
    that at least ``MIN_SUBSAMPLE`` elements are counted (most tensors of a large MoE are small).
    """
    return streamed_stats_batch([child], [candidates], child_dtype, device, stride)[0]


def streamed_stats_batch(children: Sequence[torch.Tensor], candidates: Sequence[Sequence[torch.Tensor]],
                         child_dtype: torch.dtype | None = None, device: torch.device | None = None,
                         stride: int = FULL_SPARSE_STRIDE) -> list[TensorStats]:
    """:func:`streamed_stats` of several same-sized tensors at once (one batched product for all).

    A large MoE checkpoint is mostly thousands of small expert matrices of one shape; computing their
    Grams together removes the per-tensor overhead that otherwise dominates a full read.
    """
    n = children[0].numel()
    if any(c.numel() != n for c in children):
        raise ValueError("streamed_stats_batch needs tensors of one size")
    stride = min(stride, n // MIN_SUBSAMPLE)
    if stride < 2:
        return [tensor_stats(c, ps, child_dtype, device) for c, ps in zip(children, candidates)]
    device = device or children[0].device
    k = len(candidates[0])
    flats = [[c.reshape(-1), *[p.reshape(-1) for p in ps]] for c, ps in zip(children, candidates)]
    g = np.zeros((len(flats), k + 1, k + 1))
    sums = np.zeros((len(flats), k + 1))
    for lo in range(0, n, STATS_CHUNK):
        m = min(STATS_CHUNK, n - lo)
        t = len(flats)
        rows = torch.empty((t, k + 1, m), device=device, dtype=torch.float32)
        for j, f in enumerate(flats):  # one pass per row, written straight into the product's input
            ref = f[1][lo:lo + m].to(device=device, dtype=torch.float32)
            rows[j, 1].copy_(ref)
            for i, x in enumerate(f):
                if i != 1:
                    torch.sub(x[lo:lo + m].to(device=device, dtype=torch.float32), ref, out=rows[j, i])
        full = m - m % GRAM_BLOCK
        if full:
            blocks = rows[:, :, :full].reshape(t, k + 1, -1, GRAM_BLOCK).transpose(1, 2).reshape(-1, k + 1, GRAM_BLOCK)
            prods = torch.bmm(blocks, blocks.transpose(1, 2)).double().reshape(t, -1, k + 1, k + 1)
            g += prods.sum(dim=1).cpu().numpy()
        tail = rows[:, :, full:].double()
        g += torch.bmm(tail, tail.transpose(1, 2)).cpu().numpy()
        sums += rows.sum(dim=2).double().cpu().numpy()  # float32 cascade sums: ample for means
    # x_i = r_i + r_1 for i != 1 and x_1 = r_1: raw Gram = A g A^T with A = I plus ones in column 1.
    a = np.eye(k + 1)
    a[:, 1] = 1.0
    out = []
    for i, f in enumerate(flats):
        sub = tensor_stats(f[0][::stride], [x[::stride] for x in f[1:]], child_dtype, device)
        scale = n / sub.n
        out.append(TensorStats(
            n, a @ g[i] @ a.T, a @ sums[i], sub.eq * scale, sub.gram_ne * scale, sub.absdiff_eq * scale,
            sub.absdiff_ne * scale, sub.gram_new * scale, int(round(sub.n_new * scale)), sub.eps,
            None if sub.eq_big is None else sub.eq_big * scale, None if sub.n_big is None else sub.n_big * scale,
        ))
    return out


def _stats_torch(child: torch.Tensor, candidates: Sequence[torch.Tensor], child_dtype: torch.dtype | None,
                 device: torch.device) -> TensorStats:
    """The same statistics computed with torch on ``device`` (CUDA: full-mode chunks stay on the GPU)."""
    c = child.reshape(-1).to(device=device, dtype=torch.float32)
    ps = [p.reshape(-1).to(device=device, dtype=torch.float32) for p in candidates]
    k = len(ps)
    v = torch.stack([c, *ps]).to(torch.float64)
    gram = v @ v.T
    sums = v.sum(dim=1)
    eq = np.zeros(k)
    gram_ne = np.zeros((k, k + 1, k + 1))
    absdiff_eq = np.zeros((k, k))
    absdiff_ne = np.zeros((k, k))
    store = child_dtype if child_dtype in (torch.float16, torch.bfloat16) else None
    eps = DTYPE_EPS.get(child_dtype, 2.0**-24) if child_dtype is not None else 2.0**-24
    eq_big, n_big = np.zeros(k), np.zeros(k)
    differs_all = torch.ones_like(c, dtype=torch.bool)
    for j, p in enumerate(ps):
        if store is not None:  # a half-precision child: equal when the candidate rounds to it
            same = c == p.to(store).to(torch.float32)
        else:  # float32: merges computed as B + (A - B) land within an ulp or two of A, not on it
            same = (c - p).abs() <= EQUAL_ULPS * 2.0**-24 * p.abs()
        differs_all &= ~same
        eq[j] = float(same.sum())
        ne = v[:, ~same]
        gram_ne[j] = (ne @ ne.T).cpu().numpy()
        diffs = torch.stack([(q - p).abs() for q in ps]).to(torch.float64)
        big = diffs.amax(dim=0) > RESOLVE_ULPS * eps * p.abs()
        n_big[j] = float(big.sum())
        eq_big[j] = float((same & big).sum())
        absdiff_eq[j] = diffs[:, same & big].sum(dim=1).cpu().numpy()
        absdiff_ne[j] = diffs[:, ~same & big].sum(dim=1).cpu().numpy()
    new = v[:, differs_all]
    return TensorStats(int(c.numel()), gram.cpu().numpy(), sums.cpu().numpy(), eq, gram_ne, absdiff_eq, absdiff_ne,
                       (new @ new.T).cpu().numpy(), int(differs_all.sum()), eps, eq_big, n_big)


def _round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even), returned as float32."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32)


def _stats_numpy(child: torch.Tensor, candidates: Sequence[torch.Tensor], child_dtype: torch.dtype | None) -> TensorStats:
    c = child.reshape(-1).to(torch.float32).numpy()
    ps = [p.reshape(-1).to(torch.float32).numpy() for p in candidates]
    k = len(ps)
    v = np.stack([c, *ps]).astype(np.float64)
    gram = v @ v.T
    eq = np.zeros(k)
    gram_ne = np.zeros((k, k + 1, k + 1))
    absdiff_eq = np.zeros((k, k))
    absdiff_ne = np.zeros((k, k))
    differs_all = np.ones(c.shape, dtype=bool)
    pv = v[1:]
    eps = DTYPE_EPS.get(child_dtype, 2.0**-24) if child_dtype is not None else 2.0**-24
    eq_big, n_big = np.zeros(k), np.zeros(k)
    for j, p in enumerate(ps):
        if child_dtype == torch.bfloat16:
            same = c == _round_bf16(p)
        elif child_dtype == torch.float16:
            same = c == p.astype(np.float16).astype(np.float32)
        else:
            same = np.abs(c - p) <= EQUAL_ULPS * 2.0**-24 * np.abs(p)
        eq[j] = float(same.sum())
        diffs = np.abs(pv - pv[j])
        big = diffs.max(axis=0) > RESOLVE_ULPS * eps * np.abs(pv[j])
        n_big[j] = float(big.sum())
        if eq[j] == 0:  # nothing equal (dense merges, fine-tunes): the masked statistics are the plain ones
            gram_ne[j] = gram
            absdiff_ne[j] = diffs @ big.astype(np.float64)
            continue
        differs_all &= ~same
        ne = (~same).astype(np.float64)
        gram_ne[j] = (v * ne) @ v.T
        eq_big[j] = float((same & big).sum())
        absdiff_ne[j] = diffs @ (ne * big)
        absdiff_eq[j] = diffs @ (same & big).astype(np.float64)
    n_new = int(differs_all.sum())
    gram_new = gram if n_new == c.size else (v * differs_all.astype(np.float64)) @ v.T
    return TensorStats(int(c.size), gram, v.sum(axis=1), eq, gram_ne, absdiff_eq, absdiff_ne, gram_new, n_new, eps,
                       eq_big, n_big)


@dataclass
class TensorFit:
    """Least-squares fit of one tensor's child on the candidates, seen from reference ``ref``."""

    weights: np.ndarray  # raw-space coefficient of each candidate
    se: np.ndarray  # standard error of each weight
    t: np.ndarray  # weight / se for non-reference candidates (0 for the reference)
    r2: float | None  # delta R^2 (None when the child equals the reference)
    rss: float
    delta_ss: float  # |c - R|^2
    n: int


def _solve(gram: np.ndarray, n: int, ref: int, eps: float) -> TensorFit:
    k = gram.shape[0] - 1
    # Basis change to [y = c - R, R, P_i - R (i != ref)]: the deltas are small next to the weights,
    # so solving in these coordinates is far better conditioned than on the raw candidates.
    others = [i for i in range(k) if i != ref]
    t_mat = np.zeros((k + 1, k + 1))
    t_mat[0, 0], t_mat[0, 1 + ref] = 1.0, -1.0
    t_mat[1, 1 + ref] = 1.0
    for row, i in enumerate(others, start=2):
        t_mat[row, 1 + i], t_mat[row, 1 + ref] = 1.0, -1.0
    z = t_mat @ gram @ t_mat.T
    yy, xy, xx = z[0, 0], z[1:, 0], z[1:, 1:]
    scale = np.sqrt(np.maximum(np.diag(xx), 1e-300))
    xx_s = xx / np.outer(scale, scale)
    inv_s = np.linalg.pinv(xx_s, rcond=1e-12, hermitian=True)
    b = (inv_s @ (xy / scale)) / scale
    rss = max(float(yy - b @ xy), 0.0)
    dof = max(n - k, 1)
    # Floor: the child cannot be known better than its own storage rounding (uniform, var ulp^2/12).
    floor = (eps**2 / 12.0) * gram[0, 0] / max(n, 1)
    sigma2 = max(rss / dof, floor)
    cov_b = sigma2 * inv_s / np.outer(scale, scale)
    # Back to raw coefficients: a_i = b_i (i != ref), a_ref = 1 + b_ref - sum_i b_i.
    a_map = np.zeros((k, k))
    a_map[ref, 0] = 1.0
    for col, i in enumerate(others, start=1):
        a_map[i, col] = 1.0
        a_map[ref, col] = -1.0
    weights = a_map @ b
    weights[ref] += 1.0
    cov_a = a_map @ cov_b @ a_map.T
    se = np.sqrt(np.maximum(np.diag(cov_a), 0.0))
    t = np.zeros(k)
    for i in others:
        t[i] = weights[i] / se[i] if se[i] > 0 else 0.0
    r2 = None if yy <= floor * n else 1.0 - rss / yy
    return TensorFit(weights, se, t, r2, rss, float(yy), n)


def fit_tensor(stats: TensorStats, ref: int, subset: str = "all") -> TensorFit:
    """Fit ``child - P_ref`` on the candidates' deltas.

    ``subset``: ``all`` elements, ``kept`` (child != P_ref: a sparse merge's kept deltas) or ``new``
    (child differs from every candidate: TIES/DARE elements where several deltas were combined).
    """
    if subset == "kept":
        return _solve(stats.gram_ne[ref], stats.n - int(stats.eq[ref]), ref, stats.eps)
    if subset == "new":
        return _solve(stats.gram_new, stats.n_new, ref, stats.eps)
    return _solve(stats.gram, stats.n, ref, stats.eps)


def pearson(stats: TensorStats) -> np.ndarray:
    """Pearson r of the child with each candidate."""
    n = stats.n
    mean = stats.sums / n
    cov = stats.gram / n - np.outer(mean, mean)
    var = np.maximum(np.diag(cov), 1e-300)
    return cov[0, 1:] / np.sqrt(var[0] * var[1:])


def rel_distance(stats: TensorStats) -> np.ndarray:
    """``|c - P_j|^2 / |P_j|^2`` for each candidate j."""
    g = stats.gram
    d = np.array([g[0, 0] - 2 * g[0, j] + g[j, j] for j in range(1, g.shape[0])])
    return np.maximum(d, 0.0) / np.maximum(np.diag(g)[1:], 1e-300)


def fisher_z(r: float, n: int) -> float:
    """z of a Pearson r under independence (Fisher transform), finite even for r = 1."""
    r = min(max(r, -0.999999), 0.999999)
    return math.atanh(r) * math.sqrt(max(n - 3, 1))


def stouffer(zs: Sequence[float]) -> float:
    """Combine per-tensor z-scores: sum / sqrt(count)."""
    zs = [z for z in zs if math.isfinite(z)]
    return float(sum(zs) / math.sqrt(len(zs))) if zs else 0.0


def robust_sd(values: np.ndarray) -> float:
    """1.4826 * median absolute deviation: the sd for normal data, unmoved by a few outliers."""
    if len(values) == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


@dataclass
class GroupFit:
    """Aggregate of many tensor fits (all 2-D tensors, one layer, one component, ...)."""

    weights: np.ndarray  # median per-tensor weight
    spread: np.ndarray  # robust sd of per-tensor weights
    ci: np.ndarray  # (k, 2)
    r2: float | None  # pooled: 1 - sum RSS / sum |c - R|^2
    z: np.ndarray  # Stouffer over tensors of each candidate's t (0 for the reference)
    tensors: int


def aggregate(fits: Sequence[TensorFit], k: int) -> GroupFit | None:
    """Median weights, robust spread, 95% CI and Stouffer z over a group of tensor fits.

    CI half-width: ``1.96 * sqrt((1.2533 * spread)^2 + mean(se^2)) / sqrt(n)``: the standard error
    of a median of ``n`` values with robust sd ``spread``, plus the per-tensor estimation error
    (which keeps the interval honest when there are few tensors and zero spread).
    """
    if not fits:
        return None
    w = np.stack([f.weights for f in fits])
    se = np.stack([f.se for f in fits])
    n = len(fits)
    med = np.median(w, axis=0)
    spread = np.array([robust_sd(w[:, i]) for i in range(k)])
    half = 1.96 * np.sqrt((1.2533 * spread) ** 2 + np.mean(se**2, axis=0)) / math.sqrt(n)
    ci = np.stack([med - half, med + half], axis=1)
    den = sum(f.delta_ss for f in fits if f.r2 is not None)
    r2 = None if den <= 0 else 1.0 - sum(f.rss for f in fits if f.r2 is not None) / den
    z = np.array([stouffer([float(f.t[i]) for f in fits]) for i in range(k)])
    return GroupFit(med, spread, ci, r2, z, n)


@dataclass
class Lineage:
    """Statistics of a whole scan, ready for classification (see ``relation.py``)."""

    names: list[str]  # tensor names, aligned with stats
    stats: list[TensorStats]
    is_matrix: list[bool]  # 2-D (or more) tensors carry the lineage; 1-D are norms/biases
    layer: list[int | None]
    component: list[str]
    k: int
    fits: dict[tuple[int, str], list[TensorFit]] = field(default_factory=dict)  # (ref, subset) -> fits

    def matrix_idx(self) -> list[int]:
        return [i for i, m in enumerate(self.is_matrix) if m]

    def vector_idx(self) -> list[int]:
        return [i for i, m in enumerate(self.is_matrix) if not m]

    def fits_for(self, ref: int, subset: str = "all") -> list[TensorFit]:
        if (ref, subset) not in self.fits:
            self.fits[(ref, subset)] = [fit_tensor(s, ref, subset) for s in self.stats]
        return self.fits[(ref, subset)]

    def closest(self) -> int:
        """Candidate closest to the child: median relative distance over 2-D tensors."""
        idx = self.matrix_idx() or list(range(len(self.stats)))
        d = np.stack([rel_distance(self.stats[i]) for i in idx])
        return int(np.argmin(np.median(d, axis=0)))

    def group(self, ref: int, idx: Sequence[int], subset: str = "all") -> GroupFit | None:
        fits = self.fits_for(ref, subset)
        return aggregate([fits[i] for i in idx if fits[i].n > self.k + 1], self.k)
