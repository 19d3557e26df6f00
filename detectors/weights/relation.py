"""Relation (copy/quantized/finetune/merge/unrelated/inconclusive) and merge method from statistics.

The decision runs in a fixed order; each step is one documented test (see docs/statistics.md):

1. nothing comparable -> inconclusive
2. copy: one candidate equals the child exactly (after rounding to the child's dtype) in >= 95%
   of the 2-D tensors; quantized: the child is stored quantized and is within quantization noise,
   as it is or once its input channels' confirmed rescaling (AWQ) is undone
3. passthrough: every child layer is an exact copy of some (candidate, layer), not the identity
4. unrelated: no candidate correlates with the child (median Pearson r < 0.1 on 2-D tensors)
5. sparse merge (TIES/DARE): many exact zeros of ``child - base`` where the deltas are not zero
6. dense fit of ``child - R`` on the candidates' deltas: merge when the delta R^2 is high, or
   moderately high with weights that stay the same from tensor to tensor; else finetune of ``R``.

>>> from detectors.weights.relation import slerp_t
>>> round(slerp_t(0.7, 0.3, 0.5), 3)   # coefficient ratio -> t at an angle of 0.5 rad
0.296
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.weights.fit import GroupFit, Lineage, fisher_z, pearson, rel_distance, stouffer
from detectors.weights.layers import LayerSource, is_passthrough
from detectors.weights.rescale_stats import RescaleStats
from detectors.weights.rescaled import rescaled_copy
from detectors.weights.result import ComponentFit, LayerFit, ParentWeight

COPY_EQUAL_SHARE = 0.99  # of a tensor's elements, for the tensor to count as copied
COPY_TENSOR_SHARE = 0.95  # of the 2-D tensors
QUANTIZED_MAX_REL = 0.1  # relative L2 error of a quantized copy (8 bits: fp8, int8)
QUANTIZED_MAX_REL_4BIT = 0.25  # ... of a 4-bit one (group-wise int4 leaves ~6-12%); doubled per bit fewer
UNRELATED_R = 0.1  # median Pearson r below which a candidate is unrelated
RELATED_R = 0.3  # ... above which it is clearly related (between: inconclusive)
SPARSE_EQ_SHARE = 0.05  # share of elements where child == base exactly: TIES/DARE
TIES_RATIO = 0.5  # mean |delta| on dropped / kept elements: TIES trims small ones, DARE drops at random
MERGE_R2 = 0.8  # delta R^2 that alone makes a merge
MERGE_R2_CONSISTENT = 0.3  # ... or this much with consistent weights
CONSISTENT_SPREAD = 0.04  # robust sd of per-tensor weights, relative to |weight| (merges: ~1%)
CONTRIBUTOR = 0.05  # |weight| that makes a candidate a parent of a merge
MIN_Z = 5.0  # a contributor must be this significant (Stouffer z)


@dataclass
class Verdict:
    relation: str
    method: str | None = None
    parents: list[ParentWeight] = field(default_factory=list)
    fit_r2: float | None = None
    z: float | None = None
    base: str | None = None
    layers: list[LayerFit] = field(default_factory=list)
    components: list[ComponentFit] = field(default_factory=list)
    weight_spread: dict[str, float] = field(default_factory=dict)
    norms: dict[str, float] | None = None
    density: float | None = None
    notes: list[str] = field(default_factory=list)


def _f(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def slerp_t(s0: float | np.ndarray, s1: float | np.ndarray, theta: float | np.ndarray) -> float | np.ndarray:
    """The SLERP t whose coefficients have the ratio ``s1 / s0`` at angle ``theta`` (bisection).

    Element-wise over arrays (a verdict solves one per tensor, tens of thousands in a full read).
    """
    s0, s1, theta = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (s0, s1, theta)))
    with np.errstate(divide="ignore", invalid="ignore"):
        # Degenerate inputs: the linear share, clipped to [0, 1].
        out = np.array(np.clip(np.where(s0 + s1 != 0, s1 / (s0 + s1), 0.5), 0.0, 1.0), dtype=float)
        ok = (s0 > 0) & (s1 > 0) & (theta > 1e-6)
        target, th = s1[ok] / s0[ok], theta[ok]
    lo, hi = np.full(target.shape, 1e-9), np.full(target.shape, 1 - 1e-9)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = np.sin(mid * th) / np.sin((1 - mid) * th) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out[ok] = (lo + hi) / 2
    return float(out) if out.ndim == 0 else out


def _slerp_better(lin: Lineage, ref: int, i: int, j: int, idx: Sequence[int]) -> tuple[bool, str]:
    """Do the per-tensor coefficient sums follow the SLERP prediction from the angle better than 1?"""
    rows = np.asarray(idx, dtype=np.int64)
    fits = lin.fits_for(ref).take(rows)
    g = lin.stats.gram[rows]
    s0, s1, se_sum = fits.weights[:, i], fits.weights[:, j], np.hypot(fits.se[:, i], fits.se[:, j])
    cos = g[:, 1 + i, 1 + j] / np.sqrt(np.maximum(g[:, 1 + i, 1 + i] * g[:, 1 + j, 1 + j], 1e-300))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    keep = (theta >= 1e-3) & (s0 > 0) & (s1 > 0)
    s0, s1, theta, se_sum = s0[keep], s1[keep], theta[keep], se_sum[keep]
    tt = slerp_t(s0, s1, theta)
    pred = (np.sin((1 - tt) * theta) + np.sin(tt * theta)) / np.sin(theta)
    dev_lin, dev_slerp = np.abs(s0 + s1 - 1), np.abs(s0 + s1 - pred)
    if len(dev_lin) < 2:
        return False, "too few tensors with a measurable angle to test SLERP"
    lin_dev, sl_dev, se = (float(np.median(x)) for x in (dev_lin, dev_slerp, se_sum))
    if lin_dev > 3 * se + 1e-3 and sl_dev < 0.5 * lin_dev:
        return True, f"coefficient sums depart from 1 by {lin_dev:.4f} (median) and follow the SLERP angle prediction within {sl_dev:.4f}"
    if lin_dev <= 3 * se + 1e-3:
        return False, "coefficients sum to 1 within their errors: linear (SLERP at small angles is indistinguishable)"
    return False, f"coefficient sums depart from 1 by {lin_dev:.4f} but do not follow the SLERP angle ({sl_dev:.4f})"


def _group_weights(g: GroupFit | None, refs: Sequence[str]) -> dict[str, float]:
    return {} if g is None else {r: _f(g.weights[i]) for i, r in enumerate(refs)}


def _breakdown(lin: Lineage, ref: int, refs: Sequence[str], subset: str, verdict: Verdict) -> None:
    """Per-layer and per-component fits (2-D tensors), weight spreads, and the 1-D tensors apart."""
    mats = lin.matrix_idx()
    by_layer: dict[int, list[int]] = defaultdict(list)
    by_component: dict[str, list[int]] = defaultdict(list)
    for i in mats:
        if lin.layer[i] is not None:
            by_layer[lin.layer[i]].append(i)
        by_component[lin.component[i]].append(i)
    for layer in sorted(by_layer):
        g = lin.group(ref, by_layer[layer], subset)
        if g is not None:
            verdict.layers.append(LayerFit(layer=layer, weights=_group_weights(g, refs), r2=_f(g.r2)))
    for comp in sorted(by_component):
        g = lin.group(ref, by_component[comp], subset)
        if g is not None:
            verdict.components.append(ComponentFit(component=comp, tensors=g.tensors, weights=_group_weights(g, refs), r2=_f(g.r2)))
    g = lin.group(ref, mats, subset)
    if g is not None:
        verdict.weight_spread = {r: _f(g.spread[i]) for i, r in enumerate(refs)}
    vec = lin.group(ref, lin.vector_idx(), subset)
    if vec is not None:
        verdict.norms = _group_weights(vec, refs)


def _ancestor_z(lin: Lineage, j: int) -> float:
    mats = lin.stats.take(lin.matrix_idx())
    return stouffer(fisher_z(pearson(mats)[:, j], mats.n))


def _inferred_base(lin: Lineage) -> int | None:
    """The candidate the other candidates are closest to (needs >= 3 candidates to mean anything)."""
    if lin.k < 3:
        return None
    g = lin.stats.gram[lin.matrix_idx()][:, 1:, 1:]
    diag = np.diagonal(g, axis1=1, axis2=2)
    d2 = diag[:, :, None] + diag[:, None, :] - 2 * g
    cost = np.sqrt(np.maximum(d2, 0.0)).sum(axis=2) / np.sqrt(np.maximum(diag.mean(axis=1), 1e-300))[:, None]
    return int(np.argmin(cost.sum(axis=0)))


def quantized_max_rel(bits: int) -> float:
    """Relative L2 error a ``bits``-bit quantized copy may show (the noise grows ~2x per bit fewer).

    >>> quantized_max_rel(8), quantized_max_rel(4), quantized_max_rel(3), quantized_max_rel(2)
    (0.1, 0.25, 0.5, 0.8)
    """
    if bits >= 8:
        return QUANTIZED_MAX_REL
    return min(0.8, QUANTIZED_MAX_REL_4BIT * 2.0 ** (4 - bits)) if bits <= 4 else QUANTIZED_MAX_REL_4BIT


def classify(
    lin: Lineage,
    refs: Sequence[str],
    base: int | None = None,
    child_quantized: bool = False,
    layer_matches: list[LayerSource] | None = None,
    parent_layers: dict[str, int] | None = None,
    child_bits: int = 8,
    scale_fits: RescaleStats | None = None,
) -> Verdict:
    """Decide the relation of the child to the candidates ``refs`` (same order as the statistics).

    ``scale_fits`` (full reads of a quantized child): per-channel scale fits, for a child whose
    input channels were rescaled before quantizing (AWQ); see :mod:`~detectors.weights.rescaled`.
    """
    mats = lin.matrix_idx()
    if not mats or lin.k == 0:
        return Verdict("inconclusive", notes=["no 2-D tensor could be compared"])
    stats = lin.stats.take(mats)
    eq_share = stats.eq_shares()  # (tensors, k)
    # Sparse-merge evidence counts only elements a dense merge would have moved (see fit.TensorStats).
    sparse_share = stats.sparse_shares()
    r = pearson(stats)
    med_r = np.median(r, axis=0)
    notes: list[str] = []

    # 2. copy / quantized
    copied = (eq_share >= COPY_EQUAL_SHARE).mean(axis=0)
    j = int(np.argmax(copied))
    if copied[j] >= COPY_TENSOR_SHARE and not child_quantized:
        v = Verdict("copy", parents=[ParentWeight(ref=refs[j], weight=1.0, ci=(1.0, 1.0))], z=_f(_ancestor_z(lin, j), 1), base=refs[j])
        v.notes.append(f"{copied[j]:.0%} of the compared 2-D tensors equal {refs[j]} exactly (after rounding to the child's dtype)")
        return v
    if child_quantized:
        rel = np.median(np.sqrt(rel_distance(stats)), axis=0)
        j = int(np.argmin(rel))
        limit = quantized_max_rel(child_bits)
        rescaled = rescaled_copy(lin, scale_fits, limit) if scale_fits is not None and rel[j] > limit else None
        if rescaled is not None and rescaled.within:
            j = rescaled.candidate
            rel[j] = rescaled.error  # its relative error once the confirmed rescaling is undone
        if rel[j] <= limit:
            v = Verdict("quantized", parents=[ParentWeight(ref=refs[j], weight=1.0, ci=(1.0, 1.0))], z=_f(_ancestor_z(lin, j), 1), base=refs[j])
            v.notes.append(f"the child is stored quantized and matches {refs[j]} within {rel[j]:.3f} relative error")
            v.notes += [rescaled.note(refs[j])] if rescaled is not None else []
            return v
        notes.append(f"the child is stored quantized but no candidate matches it within {limit} relative error")
        if rescaled is not None:
            notes.append(rescaled.note(refs[rescaled.candidate]))
        elif scale_fits is None:
            notes.append("a full read (--full) also tests whether its input channels were rescaled before quantizing (AWQ, SmoothQuant)")

    # 3. passthrough
    if layer_matches and is_passthrough(layer_matches, parent_layers or {}):
        return _passthrough(lin, refs, layer_matches)

    # 4. unrelated
    best = float(np.max(med_r))
    if best < UNRELATED_R:
        z = max(_ancestor_z(lin, i) for i in range(lin.k))
        return Verdict("unrelated", z=_f(z, 1), notes=[f"no candidate correlates with the child (best median Pearson r {best:.3f} on 2-D tensors)"])
    if best < RELATED_R:
        return Verdict("inconclusive", notes=[f"weak correlation only (best median Pearson r {best:.3f}): neither clearly related nor unrelated"])

    # 5. sparse merges relative to a base
    anc = base if base is not None else _inferred_base(lin)
    sparse_b = anc if anc is not None else int(np.argmax(np.median(sparse_share, axis=0)))
    if float(np.median(sparse_share[:, sparse_b])) >= SPARSE_EQ_SHARE and lin.k >= 2:
        v = _sparse(lin, refs, sparse_b, sparse_share)
        if v is not None:
            v.notes = notes + v.notes
            return v

    # 6. dense fit
    ref = base if base is not None else lin.closest()
    g = lin.group(ref, mats)
    assert g is not None
    contributors = [i for i in range(lin.k) if abs(g.weights[i]) > CONTRIBUTOR]
    movers = [i for i in contributors if i != ref and g.z[i] > MIN_Z]
    r2 = g.r2 if g.r2 is not None else 0.0
    consistent = bool(movers) and all(g.spread[i] < CONSISTENT_SPREAD * abs(g.weights[i]) for i in movers)
    v = Verdict("finetune", base=refs[ref], fit_r2=_f(g.r2))
    _breakdown(lin, ref, refs, "all", v)
    if movers and (r2 >= MERGE_R2 or (r2 >= MERGE_R2_CONSISTENT and consistent)):
        v.relation = "merge"
        v.parents = [ParentWeight(ref=refs[i], weight=_f(g.weights[i]), ci=(_f(g.ci[i, 0]), _f(g.ci[i, 1]))) for i in contributors]
        v.z = _f(min(g.z[i] for i in movers), 1)
        v.method, why = _dense_method(lin, ref, refs, g, contributors, anc, mats)
        v.notes.append(f"delta R^2 {r2:.4f} from {refs[ref]}; weights {'consistent' if consistent else 'vary'} across tensors")
        v.notes.append(why)
        if r2 < 0.999:
            rounding = _rounding_share(lin, ref, mats)
            if 1.0 - r2 <= 2.0 * rounding:
                v.notes.append(f"the unexplained {1 - r2:.2%} is what rounding the child to its storage dtype leaves (expected {rounding:.2%}): an exact merge")
            else:
                v.notes.append("fit is high but imperfect: a merge trained a little afterwards, or a merge method beyond per-tensor linear")
    else:
        # One ancestor: the child is that model plus its own delta, so its weight is 1 by definition.
        v.parents = [ParentWeight(ref=refs[ref], weight=1.0, ci=(1.0, 1.0))]
        v.z = _f(_ancestor_z(lin, ref), 1)
        v.notes.append(f"closest candidate {refs[ref]}; the other candidates explain {max(r2, 0.0):.1%} of the child's delta from it")
        if base is None and sum(abs(g.weights[i]) for i in range(lin.k) if i != ref) > 0.3:
            v.notes.append("the child sits between the candidates (near their common base?): scan again with the base as --base")
        if movers and not consistent:
            v.notes.append("per-tensor weights of the other candidates wander (sibling fine-tunes correlate, merges do not wander)")
    v.notes = notes + v.notes
    return v


def _passthrough(lin: Lineage, refs: Sequence[str], matches: list[LayerSource]) -> Verdict:
    counts: dict[str, int] = {}
    for m in matches:
        counts[m.ref] = counts.get(m.ref, 0) + 1
    total = len(matches)
    v = Verdict("merge", method="passthrough", fit_r2=1.0)
    v.parents = [ParentWeight(ref=r, weight=round(c / total, 4), ci=(round(c / total, 4), round(c / total, 4))) for r, c in counts.items()]
    v.layers = [LayerFit(layer=m.layer, weights={m.ref: 1.0}, r2=1.0, source=f"{m.ref}:{m.source_layer}") for m in matches]
    v.z = _f(max(_ancestor_z(lin, refs.index(r)) for r in counts), 1)
    v.notes.append(f"every one of the child's {total} layers is an exact copy of a candidate layer; weights are shares of layers")
    return v


def _rounding_share(lin: Lineage, ref: int, idx: Sequence[int]) -> float:
    """Share of the child's delta energy that rounding to its storage dtype alone leaves unexplained.

    Rounding x to a format with relative step ``eps`` (2^-8 for bf16) leaves an error of variance
    about ``eps^2 x^2 / 4`` (ulp^2/12 averaged over the mantissa), which no fit can explain.
    """
    fits, rows = lin.fits_for(ref), np.asarray(idx, dtype=np.int64)
    noise = float(np.sum(0.25 * lin.stats.eps[rows] ** 2 * lin.stats.gram[rows, 0, 0]))
    delta = float(np.sum(fits.delta_ss[rows], where=~np.isnan(fits.r2[rows])))
    return noise / delta if delta > 0 else 0.0


def _sparse(lin: Lineage, refs: Sequence[str], b: int, eq_share: np.ndarray) -> Verdict | None:
    mats = lin.matrix_idx()
    others = [i for i in range(lin.k) if i != b]
    # Where child == base, do the other candidates' deltas exist? (else: nothing was dropped)
    st = lin.stats.take(mats)
    on_eq = st.absdiff_eq[:, b, others] / np.maximum(st.eq_big[:, b], 1)[:, None]
    on_ne = st.absdiff_ne[:, b, others] / np.maximum(st.n_big[:, b] - st.eq_big[:, b], 1)[:, None]
    if not np.all(np.median(on_eq, axis=0) > 0):
        return None
    ratio = float(np.median(on_eq / np.maximum(on_ne, 1e-30)))
    method = "ties" if ratio < TIES_RATIO else "dare"
    g = lin.group(b, mats, "new")
    if g is None:
        return None
    density = 1.0 - float(np.median(eq_share[:, b]))
    v = Verdict("merge", method=method, base=refs[b], fit_r2=_f(g.r2), density=_f(density))
    contributors = [i for i in others if abs(g.weights[i]) > CONTRIBUTOR]
    if not contributors:
        return None
    v.parents = [ParentWeight(ref=refs[i], weight=_f(g.weights[i]), ci=(_f(g.ci[i, 0]), _f(g.ci[i, 1]))) for i in contributors]
    bw = 1.0 - float(sum(g.weights[i] for i in others))
    v.parents.append(ParentWeight(ref=refs[b], weight=_f(bw), ci=(_f(bw), _f(bw))))
    v.z = _f(min(g.z[i] for i in contributors), 1)
    _breakdown(lin, b, refs, "new", v)
    v.notes.append(f"{1 - density:.0%} of the elements equal the base {refs[b]} exactly while the candidates' deltas there are not zero: a sparse merge (kept share {density:.2f})")
    v.notes.append(f"dropped deltas are {ratio:.2f}x the size of kept ones: {'trimmed by magnitude (TIES)' if method == 'ties' else 'dropped at random (DARE)'}")
    v.notes.append("weights are fitted on elements that differ from every candidate; the base is listed because the merge is relative to it")
    return v


def _dense_method(lin: Lineage, ref: int, refs: Sequence[str], g: GroupFit, contributors: list[int],
                  anc: int | None, mats: Sequence[int]) -> tuple[str, str]:
    if len(contributors) == 2:
        i, j = contributors
        is_slerp, why = _slerp_better(lin, ref, i, j, mats)
        if is_slerp:
            return "slerp", why
    else:
        why = ""
    if anc is not None and anc in contributors:
        non_base = [i for i in contributors if i != anc]
        if len(non_base) >= 2 or g.weights[anc] < -CONTRIBUTOR:
            return "task_arithmetic", f"base {refs[anc]} carries weight {g.weights[anc]:.3f} = 1 - sum of the task weights"
    return "linear", why or "per-tensor weights are constant and sum to 1"
