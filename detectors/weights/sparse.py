"""Sparse merges (TIES, DARE, breadcrumbs): many elements of ``child - base`` are exactly zero.

A sparse merge keeps only part of each parent's delta (``density``) and adds the kept parts to the
base. Three things are read from the statistics:

* **density**: the share ``u`` of resolvable elements the merge moved off the base (some parent's
  delta kept there). When ``m`` parents each keep a share ``d`` independently, ``1 - u = (1 - d)^m``,
  so ``d = 1 - (1 - u)^(1/m)``. Measured on mergekit merges of two parents at densities
  0.1/0.3/0.5/0.7: 0.099/0.297/0.496/0.696.
* **method**: where the child equals the base (every parent dropped), are the parents' deltas as
  large as where it does not? DARE drops at random: the ratio of mean ``|delta|`` on dropped to kept
  elements is 1 (measured 0.93-1.00). TIES and breadcrumbs trim by magnitude: 0.23-0.53. Ratios of
  ``DARE_RATIO`` and above read as ``dare``, ``TIES_RATIO`` and below as ``ties`` (magnitude-trimmed:
  TIES, or breadcrumbs, which also drops the very largest), and between as ``unknown``.
* **weights**: the average share of each parent's delta that the child carries, fitted on all
  elements from the base. DARE's drop-and-rescale is unbiased (a kept delta is scaled by
  ``1/density``), so for ``dare_linear`` this is the configured weight; merges that normalise per
  element by the parents kept there (TIES, ``dare_ties``) give a parent its whole delta where it
  alone was kept, so their shares are above the configured weights (the note says so). For TIES,
  the fit on the elements where deltas were combined gives the configured mix (a note).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from provbot.detectors.weights.breakdown import breakdown
from provbot.detectors.weights.fit import Lineage
from provbot.detectors.weights.result import BaseSource, Method, ParentWeight
from provbot.detectors.weights.verdict import Verdict, finite, parent_weight, rounded

SPARSE_EQ_SHARE = 0.05  # share of resolvable elements where child == base exactly: a sparse merge
DARE_RATIO = 0.85  # mean |delta| dropped / kept at or above this: dropped at random (DARE)
TIES_RATIO = 0.65  # ... at or below this: trimmed by magnitude (TIES, breadcrumbs)
CONTRIBUTOR = 0.05  # share of a parent's delta that makes it a parent of the merge
MIN_Z = 5.0  # a contributor must be this significant (Stouffer z)


def is_sparse(sparse_share: np.ndarray, b: int) -> bool:
    """Does the child equal candidate ``b`` on enough resolvable elements to be a sparse merge on it?"""
    return float(np.median(sparse_share[:, b])) >= SPARSE_EQ_SHARE


def sparse_verdict(
    lin: Lineage, refs: Sequence[str], b: int, sparse_share: np.ndarray, base_source: BaseSource | None
) -> Verdict | None:
    """The sparse-merge verdict relative to base ``b``; None when the statistics do not show one."""
    mats = lin.matrix_idx()
    others = [i for i in range(lin.k) if i != b]
    st = lin.stats.take(mats)
    # Where child == base, do the other candidates' deltas exist? (else: nothing was dropped)
    on_eq = st.absdiff_eq[:, b, others] / np.maximum(st.eq_big[:, b], 1)[:, None]
    on_ne = st.absdiff_ne[:, b, others] / np.maximum(st.n_big[:, b] - st.eq_big[:, b], 1)[:, None]
    if not others or not np.all(np.median(on_eq, axis=0) > 0):
        return None
    ratio = float(np.median(on_eq / np.maximum(on_ne, 1e-30)))
    method: Method = "dare" if ratio >= DARE_RATIO else "ties" if ratio <= TIES_RATIO else "unknown"
    g = lin.group(b, mats, "all")
    kept_fit = lin.group(b, mats, "new")
    if g is None:
        return None
    contributors = [i for i in others if g.weights[i] > CONTRIBUTOR and g.z[i] > MIN_Z]
    if not contributors:
        return None
    union = 1.0 - float(np.median(sparse_share[:, b]))
    density = 1.0 - (1.0 - union) ** (1.0 / len(contributors))
    v = Verdict(
        "merge",
        method=method,
        base=refs[b],
        base_source=base_source,
        fit_r2=rounded(kept_fit.r2 if kept_fit is not None else g.r2),
        density=rounded(density),
    )
    v.parents = [parent_weight(refs[i], g, i) for i in contributors]
    bw = finite(1.0 - float(sum(g.weights[i] for i in others)))
    v.parents.append(ParentWeight(ref=refs[b], weight=bw, ci=(bw, bw)))  # the merge is relative to it
    v.z = rounded(min(g.z[i] for i in contributors), 1)
    breakdown(lin, b, refs, "all", v)
    how = {
        "dare": "dropped at random (DARE)",
        "ties": "trimmed by magnitude (TIES, or breadcrumbs)",
        "unknown": "neither clearly random nor clearly by magnitude",
    }[method]
    v.notes.append(
        f"{1 - union:.0%} of the resolvable elements equal the base {refs[b]} exactly while the "
        f"candidates' deltas there are not zero: a sparse merge keeping about {density:.2f} of each "
        f"parent's delta ({union:.0%} of the elements moved)"
    )
    v.notes.append(f"dropped deltas are {ratio:.2f}x the size of kept ones: {how}")
    v.notes.append(
        "weights are the average share of each parent's delta the child carries (all elements, from the "
        "base); merges that normalise per element (TIES, dare_ties) give a parent its whole delta where "
        "it alone was kept, so these shares can exceed the configured weights"
    )
    if method == "ties" and kept_fit is not None and len(contributors) >= 2:
        # Kept deltas are not rescaled: where several were combined, their mix is the configured one.
        mix = np.array([kept_fit.weights[i] for i in contributors], dtype=float)
        if mix.sum() > 0:
            mix = mix / mix.sum()
            v.notes.append(
                "where several parents' deltas were combined they are mixed "
                + ", ".join(f"{refs[i]} {m:.2f}" for i, m in zip(contributors, mix))
            )
    if method == "dare":
        v.notes.append(
            f"DARE scales each kept delta by 1/density (about {1 / max(density, 1e-9):.2f} here): the "
            "shares are averages over kept and dropped elements, not the larger factors kept ones carry"
        )
    if g.r2 is not None:
        v.notes.append(
            f"delta R^2 {g.r2:.3f} on all elements (dropped deltas are noise to a dense fit), "
            f"{(kept_fit.r2 if kept_fit and kept_fit.r2 is not None else float('nan')):.3f} where deltas were combined"
        )
    return v
