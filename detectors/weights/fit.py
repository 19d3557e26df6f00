"""Lineage statistics: per-tensor sufficient statistics, the delta fit, and their aggregation.

Everything follows from a few numbers per tensor, accumulated once over the sampled (or, in full
mode, streamed) elements of the child ``c`` and the candidates ``P_1..P_k``:

* ``gram``: the float64 Gram matrix of ``[c, P_1, ..., P_k]`` (plus their sums, for Pearson r);
* ``eq[j]``: how many elements satisfy ``c == P_j`` exactly (after casting ``P_j`` to the child's
  storage dtype, so dtype casts count as equal);
* ``eq_big[j]`` / ``n_big[j]``: the same equality count restricted to *resolvable* elements, where
  some other candidate differs from ``P_j`` by more than ``RESOLVE_ULPS`` rounding steps of the
  child's dtype. A dense merge moves every such element off ``P_j``; only a sparse merge (TIES/DARE)
  leaves them on it. Without this restriction a bf16 blend of two close models looks sparse, since
  every small delta rounds back onto the base;
* ``absdiff_eq[j, i]`` / ``absdiff_ne[j, i]``: the summed ``|P_i - P_j|`` on the resolvable elements
  equal / not equal to ``P_j`` (TIES trims small deltas, DARE drops at random).

Statistics add up across chunks (``TensorStats.__add__``), which is how ``--full`` streams big
tensors; :func:`batch_stats` computes many equally sized tensors (or samples) at once.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import numpy.ma  # noqa: F401 - np.median imports it on first use: 50 ms in the middle of the first scan
import torch

from provbot.detectors.weights.kernels import block_gram, sparse_sums, unpack_pairs
from provbot.detectors.weights.safetensors_format import DTYPES

# Relative rounding step (2^-mantissa bits) of each storage dtype: floors the residual variance so
# that exact merges get a large finite z rather than infinity.
DTYPE_EPS = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float64: 2.0**-53}
# The dtypes a child's values are compared in as stored (fp8 and int8 are decoded to float32 first).
_STORAGE = {name: d.torch_dtype for name, d in DTYPES.items() if d.torch_dtype.is_floating_point and not d.is_float8}


def storage_dtype(safetensors_dtype: str) -> torch.dtype | None:
    """The child's storage dtype as the statistics need it (None: fp8/int8, decoded to float32).

    >>> storage_dtype("BF16"), storage_dtype("F8_E4M3")
    (torch.bfloat16, None)
    """
    return _STORAGE.get(safetensors_dtype)


# Elements per exact statistics pass (float64 working copies: (k+1) x 128k x 8 bytes = 4 MiB for
# k = 3). Passes of 1M elements page-faulted their fresh buffers in again and again, which was half
# the time of a sampled scan's statistics; at this size the allocator reuses them.
STATS_CHUNK = 2**17
# Full mode: sparse-merge statistics from every FULL_SPARSE_STRIDE-th element of a streamed batch
# (see batch_stats), and never from fewer than MIN_SUBSAMPLE elements.
FULL_SPARSE_STRIDE = 256
MIN_SUBSAMPLE = 512
# Subsamples are taken as runs of this many consecutive elements (see subsample).
SUBSAMPLE_RUN = 64


@dataclass
class TensorStats:
    """Sufficient statistics of one tensor (additive over element chunks)."""

    n: int
    gram: np.ndarray  # (k+1, k+1) over [child, candidates...]
    sums: np.ndarray  # (k+1,)
    eq: np.ndarray  # (k,) count of child == candidate j
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
            self.n + other.n,
            self.gram + other.gram,
            self.sums + other.sums,
            self.eq + other.eq,
            self.absdiff_eq + other.absdiff_eq,
            self.absdiff_ne + other.absdiff_ne,
            self.gram_new + other.gram_new,
            self.n_new + other.n_new,
            max(self.eps, other.eps),
            _add(self.eq_big, other.eq_big),
            _add(self.n_big, other.n_big),
        )

    def sparse_share(self, j: int) -> float:
        """Share of the elements resolvable for candidate ``j`` on which the child equals ``P_j``."""
        if self.eq_big is None or self.n_big is None:
            return float(self.eq[j]) / max(self.n, 1)
        return float(self.eq_big[j]) / max(float(self.n_big[j]), 1.0)


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else a + b


@dataclass
class StatsTable:
    """The :class:`TensorStats` of ``T`` tensors as columns: row ``t`` is tensor ``t``.

    A full read of a large MoE holds tens of thousands of tensors, and the fits and tests of a
    verdict work on whole columns; a record (``table[t]``, views into the columns) is made only
    for the tensors a caller looks at one by one.

    >>> import torch
    >>> a, b = torch.randn(3, 5000), torch.randn(3, 5000)
    >>> table = batch_sums(0.5 * a + 0.5 * b, [a, b]).table()
    >>> len(table), table.gram.shape, table[2].n
    (3, (3, 3, 3), 5000)
    """

    n: np.ndarray  # (T,) int64
    gram: np.ndarray  # (T, k+1, k+1)
    sums: np.ndarray  # (T, k+1)
    eq: np.ndarray  # (T, k)
    absdiff_eq: np.ndarray  # (T, k, k)
    absdiff_ne: np.ndarray  # (T, k, k)
    gram_new: np.ndarray  # (T, k+1, k+1)
    n_new: np.ndarray  # (T,) int64
    eps: np.ndarray  # (T,)
    eq_big: np.ndarray  # (T, k)
    n_big: np.ndarray  # (T, k)

    @property
    def k(self) -> int:
        return int(self.eq.shape[1])

    def __len__(self) -> int:
        return len(self.n)

    def __getitem__(self, t: int) -> TensorStats:
        return TensorStats(
            int(self.n[t]),
            self.gram[t],
            self.sums[t],
            self.eq[t],
            self.absdiff_eq[t],
            self.absdiff_ne[t],
            self.gram_new[t],
            int(self.n_new[t]),
            float(self.eps[t]),
            self.eq_big[t],
            self.n_big[t],
        )

    def __iter__(self) -> Iterator[TensorStats]:
        return (self[t] for t in range(len(self)))

    def take(self, rows: Sequence[int] | np.ndarray) -> StatsTable:
        """The table of the given rows, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        return StatsTable(*(getattr(self, f.name)[idx] for f in fields(self)))

    def eq_shares(self) -> np.ndarray:
        """(T, k): share of each tensor's elements on which the child equals each candidate."""
        shares: np.ndarray = self.eq / np.maximum(self.n, 1)[:, None]
        return shares

    def sparse_shares(self) -> np.ndarray:
        """(T, k): :meth:`TensorStats.sparse_share` of every tensor and candidate."""
        shares: np.ndarray = self.eq_big / np.maximum(self.n_big, 1.0)
        return shares

    @staticmethod
    def concat(parts: Sequence[StatsTable]) -> StatsTable:
        return StatsTable(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(StatsTable)))

    @staticmethod
    def empty(k: int) -> StatsTable:
        """A table of no tensors, for ``k`` candidates."""
        k1 = k + 1
        shapes = {
            "gram": (k1, k1),
            "sums": (k1,),
            "eq": (k,),
            "absdiff_eq": (k, k),
            "absdiff_ne": (k, k),
            "gram_new": (k1, k1),
            "eq_big": (k,),
            "n_big": (k,),
        }
        ints = {"n", "n_new"}
        return StatsTable(
            **{
                f.name: np.zeros((0, *shapes.get(f.name, ())), dtype=np.int64 if f.name in ints else float)
                for f in fields(StatsTable)
            }
        )

    @staticmethod
    def of(records: Sequence[TensorStats]) -> StatsTable:
        """Stack records (at least one). Records without resolvable counts count every element."""

        def big(s: TensorStats) -> tuple[np.ndarray, np.ndarray]:
            if s.eq_big is None or s.n_big is None:
                return np.asarray(s.eq, dtype=float), np.full(s.k, float(s.n))
            return s.eq_big, s.n_big

        bigs = [big(s) for s in records]
        stacked = {
            f: np.stack([getattr(s, f) for s in records])
            for f in ("gram", "sums", "eq", "absdiff_eq", "absdiff_ne", "gram_new")
        }
        return StatsTable(
            n=np.array([s.n for s in records], dtype=np.int64),
            **stacked,
            n_new=np.array([s.n_new for s in records], dtype=np.int64),
            eps=np.array([s.eps for s in records], dtype=float),
            eq_big=np.stack([b[0] for b in bigs]),
            n_big=np.stack([b[1] for b in bigs]),
        )


def tensor_stats(
    child: torch.Tensor,
    candidates: Sequence[torch.Tensor],
    child_dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> TensorStats:
    """Statistics of one tensor (or one chunk of it) from 1-D float tensors at the same positions.

    ``child_dtype`` is the child's storage dtype: candidates are rounded to it before the exact
    equality count, so a bf16 re-save of a float32 model counts as equal everywhere.
    """
    n = child.numel()
    if n > STATS_CHUNK:
        # Bounded memory: the float64 working copies are (k+1) x chunk, not x tensor.
        total = None
        for a in range(0, n, STATS_CHUNK):
            part = tensor_stats(
                child[a : a + STATS_CHUNK], [p[a : a + STATS_CHUNK] for p in candidates], child_dtype, device
            )
            total = part if total is None else total + part
        return total  # type: ignore[return-value]
    return batch_stats(child.reshape(1, -1), [p.reshape(1, -1) for p in candidates], child_dtype, device)[0]


def batch_stats(
    children: torch.Tensor,
    candidates: Sequence[torch.Tensor],
    child_dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    stride: int = 1,
    compiled: bool = False,
) -> list[TensorStats]:
    """Statistics of ``T`` tensors at once: ``children`` and every candidate are (T, n), any float dtype.

    One :class:`TensorStats` record per row of ``batch_sums(...).table()``; see :func:`batch_sums`
    for the arguments.

    >>> import torch
    >>> a, b = torch.randn(2, 5000), torch.randn(2, 5000)
    >>> [st.n for st in batch_stats(0.5 * a + 0.5 * b, [a, b])]
    [5000, 5000]
    """
    return list(batch_sums(children, candidates, child_dtype, device, stride, compiled).table())


def batch_sums(
    children: torch.Tensor,
    candidates: Sequence[torch.Tensor],
    child_dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    stride: int = 1,
    compiled: bool = False,
) -> BatchSums:
    """The sums behind :class:`TensorStats` for ``T`` tensors at once, as arrays (see :class:`BatchSums`).

    A sampled scan compares hundreds of equally long samples, and a large MoE checkpoint is mostly
    thousands of equally sized experts: one batch of operations for all of them, instead of a
    dozen per tensor, is what keeps either fast. Full reads keep these arrays and make the
    table of every tensor once at the end (:meth:`BatchSums.cat`), not per batch.

    ``stride == 1``: everything exact, in float64, from every element (samples; small tensors).
    ``stride > 1`` (full mode): the Gram matrix and sums come from every element through
    :func:`~provbot.detectors.weights.kernels.block_gram` (float32 products of the deltas from the first
    candidate, in blocks summed in float64: the large raw terms cancel algebraically when the fit
    changes basis), and the sparse-merge statistics (equality counts, masked Grams) from a
    systematic ``1/stride`` subsample, scaled up by ``n / n_sub``: shares and the fits of new elements are
    still estimated from thousands of elements per tensor, while their passes no longer dominate
    a full read. The stride is shortened so that at least ``MIN_SUBSAMPLE`` elements are counted,
    and a tensor too small for that (below two subsamples) is computed exactly. ``compiled``: the
    Gram pass uses the ``torch.compile``'d CPU kernel (see :mod:`~provbot.detectors.weights.kernels`).
    """
    t, n = children.shape
    if any(p.shape != (t, n) for p in candidates):
        raise ValueError("batch_stats needs the child and every candidate as (T, n) of one shape")
    if not candidates:
        raise ValueError("batch_stats needs at least one candidate")
    device = device or children.device
    xs = [x.to(device) for x in (children, *candidates)]
    stride = min(stride, n // MIN_SUBSAMPLE)
    if stride < 2:
        # The kernels' basis [x_0 - x_1, x_1, x_i - x_1], exact in float64.
        ref = xs[1].to(torch.float64)
        v = torch.stack([xs[0].to(torch.float64) - ref, ref, *[x.to(torch.float64) - ref for x in xs[2:]]], dim=1)
        gram, sums = v @ v.transpose(1, 2), v.sum(dim=2)
        sub, scale = xs, 1.0
    else:
        gram, sums = block_gram(xs, compiled)
        sub = [subsample(x, stride) for x in xs]
        scale = n / sub[0].shape[1]
    eps = DTYPE_EPS.get(child_dtype, 2.0**-24) if child_dtype is not None else 2.0**-24
    half = child_dtype if child_dtype in (torch.bfloat16, torch.float16) else None
    sp = sparse_sums(sub, half, eps, compiled, block=None if scale == 1.0 else SUBSAMPLE_RUN)
    if scale != 1.0:
        sp = sp * scale
    return BatchSums(np.full(t, n, dtype=np.int64), np.full(t, eps), gram.cpu(), sums.cpu(), sp.cpu())


@dataclass
class BatchSums:
    """Sums of ``T`` tensors, one row each: what a :class:`StatsTable` holds, in the kernels' basis.

    Gram matrices and sums are over the kernels' rows ``[x_0 - x_1, x_1, x_i - x_1]`` (see
    :mod:`~provbot.detectors.weights.kernels`); ``sparse`` has :func:`~provbot.detectors.weights.kernels.sparse_sums`'
    layout, already scaled from a subsample to all ``n`` elements. All of it adds up across
    chunks of a tensor, so a full read can keep batches as arrays and sum and convert them once.
    """

    n: np.ndarray  # (T,) elements
    eps: np.ndarray  # (T,) rounding step of the child's storage dtype
    gram: torch.Tensor  # (T, k+1, k+1) float64, CPU
    sums: torch.Tensor  # (T, k+1)
    sparse: torch.Tensor  # (T, L)

    @staticmethod
    def cat(parts: Sequence[BatchSums], names: Sequence[str], into: Sequence[str]) -> BatchSums:
        """Join batches whose rows are named ``names`` (in order) into one row per name of ``into``,
        in that order, summing rows of the same name (the chunks of a big tensor).

        Raises ``KeyError`` for a row whose name is not in ``into``, and for a name of ``into``
        that no row has.
        """
        pos = {name: i for i, name in enumerate(into)}
        ids_np = np.fromiter((pos[name] for name in names), dtype=np.int64, count=len(names))
        hits = np.bincount(ids_np, minlength=len(into))
        if len(into) and not hits.all():
            raise KeyError(into[int(np.argmin(hits))])
        ids = torch.from_numpy(ids_np)

        def summed(rows: torch.Tensor) -> torch.Tensor:
            return torch.zeros((len(into), *rows.shape[1:]), dtype=rows.dtype).index_add_(0, ids, rows)

        n = np.bincount(ids_np, weights=np.concatenate([p.n for p in parts]), minlength=len(into)).astype(np.int64)
        eps = np.zeros(len(into))
        np.maximum.at(eps, ids_np, np.concatenate([p.eps for p in parts]))
        return BatchSums(
            n, eps, *(summed(torch.cat([getattr(p, f) for p in parts])) for f in ("gram", "sums", "sparse"))
        )

    def table(self) -> StatsTable:
        """The rows as a :class:`StatsTable`: raw Grams, numpy arrays, counts rounded to integers."""
        t, k1 = self.sums.shape
        k = k1 - 1
        # x_i = r_i + r_1 for i != 1 and x_1 = r_1, where r are the kernel rows: a raw Gram is
        # A g A^T with A = I plus ones in column 1.
        a = torch.eye(k1, dtype=torch.float64)
        a[:, 1] = 1.0
        per_j = 3 + 2 * k
        sp = self.sparse
        cols = sp[:, : k * per_j].reshape(t, k, per_j)
        cols_np = cols.numpy()
        return StatsTable(
            n=self.n,
            gram=(a @ self.gram @ a.T).numpy(),
            sums=(self.sums @ a.T).numpy(),
            eq=cols_np[:, :, 0],
            absdiff_eq=cols_np[:, :, 3 : 3 + k],
            absdiff_ne=cols_np[:, :, 3 + k : 3 + 2 * k],
            gram_new=(a @ unpack_pairs(sp[:, k * per_j + 1 :], k1) @ a.T).numpy(),
            n_new=np.rint(sp[:, k * per_j].numpy()).astype(np.int64),
            eps=self.eps,
            eq_big=cols_np[:, :, 2],
            n_big=cols_np[:, :, 1],
        )


def subsample(x: torch.Tensor, stride: int, run: int = SUBSAMPLE_RUN) -> torch.Tensor:
    """Every ``stride``-th run of ``run`` consecutive elements of each row of ``x`` (T, n).

    Runs rather than single elements: a systematic sample that touches only ``1/stride`` of the
    memory (a run fills cache lines), where single strided elements would touch every line.
    Elements past the last whole ``stride * run`` window are left out (fewer than one window).

    >>> subsample(torch.arange(20.0).reshape(1, 20), stride=2, run=3)
    tensor([[ 0.,  1.,  2.,  6.,  7.,  8., 12., 13., 14.]])
    """
    t, n = x.shape
    window = stride * run
    whole = n - n % window
    if whole == 0:
        return x[:, ::stride]
    return x[:, :whole].reshape(t, whole // window, window)[:, :, :run].reshape(t, -1)


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


@dataclass
class FitTable:
    """The :class:`TensorFit` s of ``T`` tensors as columns (``fits[t]`` is tensor ``t``'s record).

    ``r2`` is NaN where the record's is None (the child equals the reference).
    """

    weights: np.ndarray  # (T, k)
    se: np.ndarray  # (T, k)
    t: np.ndarray  # (T, k)
    r2: np.ndarray  # (T,)
    rss: np.ndarray  # (T,)
    delta_ss: np.ndarray  # (T,)
    n: np.ndarray  # (T,)

    def __len__(self) -> int:
        return len(self.n)

    def __getitem__(self, i: int) -> TensorFit:
        r2 = float(self.r2[i])
        return TensorFit(
            self.weights[i],
            self.se[i],
            self.t[i],
            None if math.isnan(r2) else r2,
            float(self.rss[i]),
            float(self.delta_ss[i]),
            int(self.n[i]),
        )

    def __iter__(self) -> Iterator[TensorFit]:
        return (self[i] for i in range(len(self)))

    def take(self, rows: Sequence[int] | np.ndarray) -> FitTable:
        idx = np.asarray(rows, dtype=np.int64)
        return FitTable(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def of(fits: Sequence[TensorFit], k: int) -> FitTable:
        if not fits:
            empty, none = np.zeros((0, k)), np.zeros(0)
            return FitTable(empty, empty, empty, none, none, none, np.zeros(0, dtype=np.int64))
        weights, se, t = (np.stack([getattr(f, name) for f in fits]) for name in ("weights", "se", "t"))
        return FitTable(
            weights,
            se,
            t,
            np.array([np.nan if f.r2 is None else f.r2 for f in fits]),
            np.array([f.rss for f in fits]),
            np.array([f.delta_ss for f in fits]),
            np.array([f.n for f in fits], dtype=np.int64),
        )


def _solve_many(gram: np.ndarray, n: np.ndarray, ref: int, eps: np.ndarray) -> FitTable:
    """Fits of ``T`` tensors at once from their Grams (T, k+1, k+1), sizes (T,) and rounding steps (T,).

    One stacked pass (a verdict fits hundreds of tensors for several references and subsets);
    each tensor's numbers are those of a fit on its own.
    """
    k = gram.shape[1] - 1
    # Basis change to [y = c - R, R, P_i - R (i != ref)]: the deltas are small next to the weights,
    # so solving in these coordinates is far better conditioned than on the raw candidates.
    others = [i for i in range(k) if i != ref]
    t_mat = np.zeros((k + 1, k + 1))
    t_mat[0, 0], t_mat[0, 1 + ref] = 1.0, -1.0
    t_mat[1, 1 + ref] = 1.0
    for row, i in enumerate(others, start=2):
        t_mat[row, 1 + i], t_mat[row, 1 + ref] = 1.0, -1.0
    z = t_mat @ gram @ t_mat.T
    yy, xy, xx = z[:, 0, 0], z[:, 1:, 0], z[:, 1:, 1:]
    scale = np.sqrt(np.maximum(np.diagonal(xx, axis1=1, axis2=2), 1e-300))
    outer = scale[:, :, None] * scale[:, None, :]
    inv_s = np.linalg.pinv(xx / outer, rcond=1e-12, hermitian=True)
    b = (inv_s @ (xy / scale)[:, :, None])[:, :, 0] / scale
    rss = np.maximum(yy - np.einsum("ti,ti->t", b, xy), 0.0)
    dof = np.maximum(n - k, 1)
    # Floor: the child cannot be known better than its own storage rounding (uniform, var ulp^2/12).
    floor = (eps**2 / 12.0) * gram[:, 0, 0] / np.maximum(n, 1)
    sigma2 = np.maximum(rss / dof, floor)
    cov_b = sigma2[:, None, None] * inv_s / outer
    # Back to raw coefficients: a_i = b_i (i != ref), a_ref = 1 + b_ref - sum_i b_i.
    a_map = np.zeros((k, k))
    a_map[ref, 0] = 1.0
    for col, i in enumerate(others, start=1):
        a_map[i, col] = 1.0
        a_map[ref, col] = -1.0
    weights = b @ a_map.T
    weights[:, ref] += 1.0
    se = np.sqrt(np.maximum(np.diagonal(a_map @ cov_b @ a_map.T, axis1=1, axis2=2), 0.0))
    t = np.zeros((len(n), k))
    with np.errstate(divide="ignore", invalid="ignore"):
        t[:, others] = np.where(se[:, others] > 0, weights[:, others] / se[:, others], 0.0)
        r2 = np.where(yy <= floor * n, np.nan, 1.0 - rss / yy)
    return FitTable(weights, se, t, r2, rss, yy, np.asarray(n, dtype=np.int64))


def fit_tensor(stats: TensorStats, ref: int, subset: str = "all") -> TensorFit:
    """Fit ``child - P_ref`` on the candidates' deltas.

    ``subset``: ``all`` elements or ``new`` ones (where the child differs from every candidate:
    the elements of a TIES/DARE merge where deltas were combined).
    """
    return fit_tensors([stats], ref, subset)[0]


def fit_tensors(stats: StatsTable | Sequence[TensorStats], ref: int, subset: str = "all") -> FitTable:
    """:func:`fit_tensor` of every tensor in ``stats``, solved in one stacked pass."""
    if len(stats) == 0:
        k = stats.k if isinstance(stats, StatsTable) else 0
        return FitTable.of([], k)
    table = stats if isinstance(stats, StatsTable) else StatsTable.of(stats)
    if subset == "new":
        grams, n = table.gram_new, table.n_new
    else:
        grams, n = table.gram, table.n
    return _solve_many(grams, n, ref, table.eps)


def pearson(stats: TensorStats | StatsTable) -> np.ndarray:
    """Pearson r of the child with each candidate: (k,) for one tensor, (T, k) for a table."""
    n = np.asarray(stats.n, dtype=float)[..., None]
    mean = stats.sums / n
    cov = stats.gram / n[..., None] - mean[..., :, None] * mean[..., None, :]
    var = np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 1e-300)
    corr: np.ndarray = cov[..., 0, 1:] / np.sqrt(var[..., :1] * var[..., 1:])
    return corr


def rel_distance(stats: TensorStats | StatsTable) -> np.ndarray:
    """``|c - P_j|^2 / |P_j|^2`` for each candidate j: (k,) for one tensor, (T, k) for a table."""
    g = stats.gram
    diag = np.diagonal(g, axis1=-2, axis2=-1)
    d = diag[..., :1] - 2 * g[..., 0, 1:] + diag[..., 1:]
    rel: np.ndarray = np.maximum(d, 0.0) / np.maximum(diag[..., 1:], 1e-300)
    return rel


def fisher_z(r: float | np.ndarray, n: int | np.ndarray) -> float | np.ndarray:
    """z of a Pearson r under independence (Fisher transform), finite even for r = 1."""
    z = np.arctanh(np.clip(r, -0.999999, 0.999999)) * np.sqrt(np.maximum(np.asarray(n) - 3, 1))
    return float(z) if np.ndim(z) == 0 else z


def stouffer(zs: Sequence[float] | np.ndarray) -> float:
    """Combine per-tensor z-scores: sum / sqrt(count), leaving out non-finite ones."""
    z = np.asarray(zs, dtype=float)
    z = z[np.isfinite(z)]
    return float(z.sum() / math.sqrt(len(z))) if len(z) else 0.0


def stouffer_columns(zs: np.ndarray) -> np.ndarray:
    """:func:`stouffer` of each column of ``zs`` (tensors x candidates).

    >>> stouffer_columns(np.array([[1.0, np.nan], [3.0, np.inf]]))
    array([2.82842712, 0.        ])
    """
    finite = np.isfinite(zs)
    count = finite.sum(axis=0)
    total = np.where(finite, zs, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.sqrt(np.maximum(count, 1)), 0.0)


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


def aggregate(fits: FitTable | Sequence[TensorFit], k: int) -> GroupFit | None:
    """Median weights, robust spread, 95% CI and Stouffer z over a group of tensor fits.

    CI half-width: ``1.96 * sqrt((1.2533 * spread)^2 + mean(se^2)) / sqrt(n)``: the standard error
    of a median of ``n`` values with robust sd ``spread``, plus the per-tensor estimation error
    (which keeps the interval honest when there are few tensors and zero spread).
    """
    if len(fits) == 0:
        return None
    table = fits if isinstance(fits, FitTable) else FitTable.of(fits, k)
    w, se, n = table.weights, table.se, len(table)
    med = np.median(w, axis=0)
    spread = 1.4826 * np.median(np.abs(w - med), axis=0)  # robust_sd of each column
    half = 1.96 * np.sqrt((1.2533 * spread) ** 2 + np.mean(se**2, axis=0)) / math.sqrt(n)
    ci = np.stack([med - half, med + half], axis=1)
    fitted = ~np.isnan(table.r2)
    den = float(table.delta_ss[fitted].sum())
    r2 = None if den <= 0 else 1.0 - float(table.rss[fitted].sum()) / den
    return GroupFit(med, spread, ci, r2, stouffer_columns(table.t), n)


@dataclass
class Lineage:
    """Statistics of a whole scan, ready for classification (see ``relation.py``)."""

    names: list[str]  # tensor names, aligned with stats
    stats: StatsTable  # (a list of records is stacked into one)
    is_matrix: list[bool]  # 2-D (or more) tensors carry the lineage; 1-D are norms/biases
    layer: list[int | None]
    component: list[str]
    k: int
    fits: dict[tuple[int, str], FitTable] = field(default_factory=dict)  # (ref, subset) -> fits

    def __post_init__(self) -> None:
        if not isinstance(self.stats, StatsTable):
            self.stats = StatsTable.of(self.stats) if len(self.stats) else StatsTable.empty(self.k)

    def subset(self, candidates: Sequence[int]) -> Lineage:
        """The same tensors with only ``candidates`` (in that order): fits on fewer regressors.

        A test of one candidate's delta is steadier without candidates that explain nothing: each
        extra regressor that correlates with it moves its per-tensor weight a little. The ``new``
        statistics keep the full set's meaning (elements that differ from every original candidate).
        """
        c = np.asarray(list(candidates), dtype=np.int64)
        rows = np.concatenate([[0], 1 + c])
        st = self.stats
        table = StatsTable(
            n=st.n,
            gram=st.gram[:, rows][:, :, rows],
            sums=st.sums[:, rows],
            eq=st.eq[:, c],
            absdiff_eq=st.absdiff_eq[:, c][:, :, c],
            absdiff_ne=st.absdiff_ne[:, c][:, :, c],
            gram_new=st.gram_new[:, rows][:, :, rows],
            n_new=st.n_new,
            eps=st.eps,
            eq_big=st.eq_big[:, c],
            n_big=st.n_big[:, c],
        )
        return Lineage(self.names, table, self.is_matrix, self.layer, self.component, len(c))

    def matrix_idx(self) -> list[int]:
        return [i for i, m in enumerate(self.is_matrix) if m]

    def vector_idx(self) -> list[int]:
        return [i for i, m in enumerate(self.is_matrix) if not m]

    def fits_for(self, ref: int, subset: str = "all") -> FitTable:
        if (ref, subset) not in self.fits:
            self.fits[(ref, subset)] = fit_tensors(self.stats, ref, subset)
        return self.fits[(ref, subset)]

    def closest(self) -> int:
        """Candidate closest to the child: median relative distance over 2-D tensors."""
        idx = self.matrix_idx() or list(range(len(self.stats)))
        return int(np.argmin(np.median(rel_distance(self.stats.take(idx)), axis=0)))

    def group(self, ref: int, idx: Sequence[int], subset: str = "all") -> GroupFit | None:
        fits = self.fits_for(ref, subset)
        rows = np.asarray(idx, dtype=np.int64)
        return aggregate(fits.take(rows[fits.n[rows] > self.k + 1]), self.k)
