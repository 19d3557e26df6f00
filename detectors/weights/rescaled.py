"""Is a quantized child a rescaled copy of a candidate (AWQ, SmoothQuant)?

AWQ multiplies a linear layer's input channels by scales ``s`` before quantizing and divides
whatever feeds that input by ``s``: the norm before q/k/v and before gate/up, the rows of up_proj
(for down_proj), the rows of v_proj (for o_proj, when the shapes allow). The network computes the
same function; only its matrices moved, by more than quantization noise. The scale fit
(:mod:`~provbot.detectors.weights.scale_fit`) undoes the move, but a free fit of ``rows + cols - 1``
scales per matrix also absorbs part of any fine-tune's delta, and a fine-tune that *learns*
per-channel scales (IA3, DoRA magnitudes) is a real change of function. So only the scales the
child's own parameters confirm count:

* a matrix's fitted column scales are *confirmed* by a compensator of the same layer (and expert)
  and length whose log adds up to a constant with theirs: the ratio ``child / candidate`` of a
  norm (``w``, or ``1 + w`` for norms stored as offsets from 1), or another matrix's fitted row
  scales (its feeder); fitted row scales by another matrix's fitted column scales (its consumer);
* a compensator confirms when it leaves at most half of the scales' unconfirmed :func:`charge`;
* a matrix's residual is then the fit's own residual for the sides confirmed (both: ``rss``;
  columns only: ``column_rss``; rows only: ``row_rss``; neither: the plain ``|C - W|^2``), plus
  the charge of the confirmed scales' departures from their compensators.

The degrees of freedom of an unconfirmed side thus buy nothing: its residual is the one without
those scales, computed exactly. The decision value is the median over the 2-D tensors of that
relative error (the plain one for tensors without a fit: embeddings, head), like the plain test.

>>> import numpy as np
>>> share = np.full(4, 0.25)
>>> round(charge(np.log([1.0, 2.0, 4.0, 8.0]), share, np.zeros(4)), 3)          # nothing confirms
0.419
>>> round(charge(np.log([1.0, 2.0, 4.0, 8.0]), share, -np.log([1.0, 2.0, 4.0, 8.0])), 3)   # a norm divided by s
0.0
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from provbot.detectors.weights.fit import Lineage, rel_distance, robust_sd
from provbot.detectors.weights.keys import classify
from provbot.detectors.weights.rescale_stats import RescaleStats
from provbot.detectors.weights.scale_fit import ScaleFit

#: Fitted row scales varying by more than this (robust sd of their log) count as a rescale of the rows.
ROW_SPREAD = 0.05
#: A compensator confirms a scale vector when it leaves at most this share of its unconfirmed charge.
CONFIRMED_SHARE = 0.5
#: Shorter scale vectors are never confirmed: a random vector undoes half the variation of a
#: 4-entry one about one time in 11, of an 8-entry one 1 in 60, of a 16-entry one 6 in 10^4, of
#: a 32-entry one never in 20,000 draws (a model's channels are 64 or more).
MIN_CONFIRM_LENGTH = 16


def charge(log_scales: np.ndarray, share: np.ndarray, log_comp: np.ndarray) -> float:
    """Residual (as a share of the child's energy) that using the scales a compensator implies,
    instead of the fitted ``log_scales``, would cost: ``sum share (1 - exp(-d))^2`` with ``d`` the
    weighted-centred ``log_scales + log_comp`` (first order: a column's fitted part times the
    scale's relative error), each channel capped at its own ``share``."""
    w = share.astype(np.float64)
    total = w.sum()
    if total <= 0:
        return 0.0
    d = log_scales.astype(np.float64) + log_comp
    d -= (w * d).sum() / total
    return float((w * np.minimum((1.0 - np.exp(-np.clip(d, -30.0, 30.0))) ** 2, 1.0)).sum())


@dataclass(frozen=True)
class Sides:
    """What confirms one matrix's fitted scales: each side's charge with no compensator
    (``*_alone``) and against its compensator (None when nothing confirms that side)."""

    cols_alone: float
    rows_alone: float
    cols: float | None
    rows: float | None

    @property
    def alone(self) -> float:
        return self.cols_alone + self.rows_alone

    def charged(self) -> float:
        """Charge left with the compensators (the unconfirmed sides' in full)."""
        return (self.cols_alone if self.cols is None else self.cols) + (
            self.rows_alone if self.rows is None else self.rows
        )

    def error(self, f: ScaleFit) -> float:
        """Relative error of the child's matrix to the candidate's with the confirmed scales only:
        the fit's residual for the sides confirmed, plus their departures from the compensators."""
        if self.cols is None and self.rows is None:
            return f.plain_rel()
        extra = ((self.cols or 0.0) + (self.rows or 0.0)) * f.child_ss
        if self.cols is not None and self.rows is not None:
            return f.rel(f.rss, extra)
        return f.rel(f.column_rss if self.cols is not None else f.row_rss, extra)


@dataclass(frozen=True)
class RescaledCopy:
    """The rescaled-copy test's answer (see the module docstring) for ``candidate``: the one nearest
    once confirmed scales are undone when that is within ``limit``, else the one nearest with
    freely fitted scales (the note then says why that is not enough).

    ``error`` decides (median over the 2-D tensors); ``before``, ``fitted`` and ``after`` are
    medians over the ``matrices`` fitted: no scales, the freely fitted scales, the confirmed ones.
    ``spread``: median robust sd of the fitted log input-channel scales (NaN when the fits were too
    far to keep their scales); ``rows_scaled``: matrices whose rows were rescaled too; ``undone``: share
    of the fitted scales' variation (as charged) that the compensators confirm.
    """

    candidate: int
    error: float
    limit: float
    before: float
    fitted: float
    after: float
    spread: float
    rows_scaled: int
    undone: float
    matrices: int

    @property
    def within(self) -> bool:
        """Within the quantization noise allowed, once the confirmed scales are undone."""
        return self.error <= self.limit

    def note(self, ref: str) -> str:
        rows = f"; rows rescaled too in {self.rows_scaled}" if self.rows_scaled else ""
        if self.within:
            return (
                f"its input channels were rescaled (AWQ-style: the inverse is folded into its norms and feeding layers, "
                f"so those differ from {ref}'s): fitted per-channel scales spread by a factor e^{self.spread:.2f} (robust sd of log "
                f"scale, median over {self.matrices} matrices{rows}), {self.undone:.1%} of their variation undone by the "
                f"child's norms and feeding layers; relative error to {ref} {self.before:.3f} before rescaling, "
                f"{self.after:.3f} after (medians over those matrices)"
            )
        if math.isnan(self.spread):
            return (
                f"even with freely fitted per-channel scales no candidate comes within {self.limit} relative error "
                f"(nearest {ref}: {self.fitted:.3f}, {self.before:.3f} before)"
            )
        return (
            f"with freely fitted per-channel scales {ref} comes within {self.fitted:.3f} relative error "
            f"({self.before:.3f} before), but only {self.undone:.1%} of their variation (a factor e^{self.spread:.2f}{rows}) "
            f"is undone by the child's norms and feeding layers: a rescale that changes what the model computes, "
            f"not AWQ's; with the confirmed scales only, {self.after:.3f}"
        )


def rescaled_copy(lin: Lineage, stats: RescaleStats, limit: float) -> RescaledCopy | None:
    """The candidate nearest to the child once confirmed channel scales are undone, and whether it
    is within relative error ``limit`` (the quantization noise allowed); None without fits."""
    mats = lin.matrix_idx()
    names = [lin.names[i] for i in mats]
    if not mats or not any(n in stats.fits for n in names):
        return None
    plain = np.sqrt(rel_distance(lin.stats.take(mats)))
    sides = [_sides(stats, names, j) for j in range(lin.k)]
    errors = [_median_error(plain[:, j], names, stats, j, sides[j]) for j in range(lin.k)]
    j = int(np.argmin(errors))
    if errors[j] > limit:  # report the candidate the free fit finds nearest, and why that is not enough
        j = int(np.argmin([_median_error(plain[:, i], names, stats, i, None) for i in range(lin.k)]))
    return _report(stats, names, j, errors[j], sides[j], limit)


def _median_error(
    plain: np.ndarray, names: Sequence[str], stats: RescaleStats, j: int, sides: dict[str, Sides] | None
) -> float:
    """Median over the 2-D tensors of the relative error to candidate ``j``: with the confirmed
    scales (freely fitted ones when ``sides`` is None) where there is a fit, plain elsewhere."""
    values = plain.copy()
    for pos, name in enumerate(names):
        if name in stats.fits:
            f = stats.fits[name][j]
            # A fit too far to keep its vectors: its free-fit error stands in, beyond the limit either way.
            values[pos] = sides[name].error(f) if sides is not None and f.has_vectors else f.rel(f.rss)
    return float(np.median(values))


def _report(
    stats: RescaleStats, names: Sequence[str], j: int, error: float, sides: dict[str, Sides], limit: float
) -> RescaledCopy:
    fits = [(n, stats.fits[n][j]) for n in names if n in stats.fits]
    kept = [(n, f) for n, f in fits if f.has_vectors]
    alone = sum(sides[n].alone for n, _ in kept)

    def median(values: list[float]) -> float:
        return float(np.median(values)) if values else float("nan")

    return RescaledCopy(
        candidate=j,
        error=error,
        limit=limit,
        before=median([f.plain_rel() for _, f in fits]),
        fitted=median([f.rel(f.rss) for _, f in fits]),
        after=median([sides[n].error(f) if f.has_vectors else f.rel(f.rss) for n, f in fits]),
        spread=median([robust_sd(f.log_cols.astype(np.float64)) for _, f in kept]),
        rows_scaled=sum(robust_sd(f.log_rows.astype(np.float64)) > ROW_SPREAD for _, f in kept),
        undone=max(0.0, 1.0 - sum(sides[n].charged() for n, _ in kept) / alone) if alone > 0 else 0.0,
        matrices=len(fits),
    )


@dataclass(frozen=True)
class _Vec:
    owner: str  # the matrix (or norm) it belongs to
    side: str  # "rows", "cols" or "norm"
    log: np.ndarray


def _sides(stats: RescaleStats, names: Sequence[str], j: int) -> dict[str, Sides]:
    """Per fitted matrix with vectors (on candidate ``j``): what confirms its columns and rows,
    among the vectors of the same layer (and expert) and length."""
    groups: dict[tuple[int, int | None], list[_Vec]] = defaultdict(list)
    mats: list[tuple[str, ScaleFit, tuple[int, int | None]]] = []
    for name in names:
        f = stats.fits[name][j] if name in stats.fits else None
        if f is None or not f.has_vectors:
            continue
        kind = classify(name)
        key = (kind.layer, kind.expert) if kind.layer is not None else (-1, None)  # outside the layers: no compensator
        groups[key] += [_Vec(name, "rows", f.log_rows), _Vec(name, "cols", f.log_cols)]
        mats.append((name, f, key))
    for name, v in stats.vectors.items():
        kind = classify(name)
        if kind.layer is not None:
            groups[(kind.layer, None)] += [_Vec(name, "norm", log) for log in _norm_ratios(v[0], v[1 + j])]
    out = {}
    for name, f, key in mats:
        # A column scale is undone by a norm or a feeder's rows; a row scale by a consumer's columns.
        near = groups[key] + (groups[(key[0], None)] if key[1] is not None else [])
        if key[0] < 0:
            near = []
        cols = [v.log for v in near if v.owner != name and v.side in ("norm", "rows") and len(v.log) == f.cols]
        rows = [v.log for v in near if v.owner != name and v.side == "cols" and len(v.log) == f.rows]
        (c_alone, c), (r_alone, r) = _confirm(f.log_cols, f.col_share, cols), _confirm(f.log_rows, f.row_share, rows)
        out[name] = Sides(c_alone, r_alone, c, r)
    return out


def _confirm(log_scales: np.ndarray, share: np.ndarray, comps: list[np.ndarray]) -> tuple[float, float | None]:
    """The scales' charge alone, and against their best compensator when that confirms them (leaves
    at most ``CONFIRMED_SHARE`` of it: a chance match among a layer's few vectors of one length
    rarely does, a real fold leaves about 1%); None when nothing confirms them."""
    alone = charge(log_scales, share, np.zeros(len(log_scales)))
    if len(log_scales) < MIN_CONFIRM_LENGTH:
        return alone, None
    best = min((charge(log_scales, share, c) for c in comps), default=math.inf)
    return alone, (best if best <= CONFIRMED_SHARE * alone else None)


def _norm_ratios(child: np.ndarray, cand: np.ndarray) -> list[np.ndarray]:
    """``log|child / candidate|`` of a norm, as stored and as an offset from 1 (Gemma's ``1 + w``)."""
    out = []
    for c, p in ((child, cand), (1.0 + child, 1.0 + cand)):
        c64, p64 = np.abs(c.astype(np.float64)), np.abs(p.astype(np.float64))
        tiny = 1e-12 * max(float(p64.max(initial=0.0)), 1e-30)
        out.append(np.log(np.maximum(c64, tiny)) - np.log(np.maximum(p64, tiny)))
    return out
