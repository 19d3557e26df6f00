"""Relation (copy/quantized/finetune/merge/related/unrelated/inconclusive) and merge method from statistics.

The decision runs in a fixed order; each step is one documented test (see docs/statistics.md):

1. nothing comparable -> inconclusive
2. copy: one candidate equals the child exactly (after rounding to the child's dtype) in >= 95%
   of the 2-D tensors; quantized: the child is stored quantized and is within quantization noise,
   as it is or once its input channels' confirmed rescaling (AWQ) is undone
3. passthrough: every child layer is an exact copy of some (candidate, layer), not the identity
4. unrelated: no candidate correlates with the child (median Pearson r < 0.1 on 2-D tensors)
5. sparse merge (TIES/DARE): many exact zeros of ``child - base`` where the deltas are not zero
   (sparse.py), the base being given, declared by a candidate's card, or inferred (ancestry.py)
6. dense fit of ``child - R`` on the candidates' deltas (dense.py): a merge when the fit is high
   and the weights stay the same from tensor to tensor; else the whole-delta tests of descent.py
   name the parent (finetune), list siblings, or say the child is related without naming one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from provbot.detectors.declared import Declared
from provbot.detectors.weights.ancestry import choose_base
from provbot.detectors.weights.dense import ancestor_z, dense_verdict, related_candidates
from provbot.detectors.weights.fit import Lineage, pearson, rel_distance
from provbot.detectors.weights.layers import LayerSource, is_passthrough
from provbot.detectors.weights.rescale_stats import RescaleStats
from provbot.detectors.weights.rescaled import rescaled_copy
from provbot.detectors.weights.result import LayerFit, ParentWeight
from provbot.detectors.weights.sparse import is_sparse, sparse_verdict
from provbot.detectors.weights.verdict import Verdict, rounded

COPY_EQUAL_SHARE = 0.99  # of a tensor's elements, for the tensor to count as copied
COPY_TENSOR_SHARE = 0.95  # of the 2-D tensors
QUANTIZED_MAX_REL = 0.1  # relative L2 error of a quantized copy (8 bits: fp8, int8)
QUANTIZED_MAX_REL_4BIT = 0.25  # ... of a 4-bit one (group-wise int4 leaves ~6-12%); doubled per bit fewer
UNRELATED_R = 0.1  # median Pearson r below which a candidate is unrelated
RELATED_R = 0.3  # ... above which it is clearly related (between: inconclusive)


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
    declared: Sequence[Declared | None] | None = None,
    scale_fits: RescaleStats | None = None,
) -> Verdict:
    """Decide the relation of the child to the candidates ``refs`` (same order as the statistics).

    ``base``: index of the given shared ancestor; ``declared``: each candidate's card lineage (the
    base one candidate names among the others orients the whole-delta tests when none is given).
    ``scale_fits`` (full reads of a quantized child): per-channel scale fits, for a child whose
    input channels were rescaled before quantizing (AWQ); see :mod:`~provbot.detectors.weights.rescaled`.
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
        v = Verdict(
            "copy",
            parents=[ParentWeight(ref=refs[j], weight=1.0, ci=(1.0, 1.0))],
            z=rounded(ancestor_z(lin, j), 1),
            base=refs[j],
        )
        v.notes.append(
            f"{copied[j]:.0%} of the compared 2-D tensors equal {refs[j]} exactly (after rounding to the child's dtype)"
        )
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
            v = Verdict(
                "quantized",
                parents=[ParentWeight(ref=refs[j], weight=1.0, ci=(1.0, 1.0))],
                z=rounded(ancestor_z(lin, j), 1),
                base=refs[j],
            )
            v.notes.append(f"the child is stored quantized and matches {refs[j]} within {rel[j]:.3f} relative error")
            v.notes += [rescaled.note(refs[j])] if rescaled is not None else []
            return v
        notes.append(f"the child is stored quantized but no candidate matches it within {limit} relative error")
        if rescaled is not None:
            notes.append(rescaled.note(refs[rescaled.candidate]))
        elif scale_fits is None:
            notes.append(
                "a full read (--full) also tests whether its input channels were rescaled before quantizing (AWQ, SmoothQuant)"
            )

    # 3. passthrough
    if layer_matches and is_passthrough(layer_matches, parent_layers or {}):
        return _passthrough(lin, refs, layer_matches)

    # 4. unrelated
    best = float(np.max(med_r))
    if best < UNRELATED_R:
        z = max(ancestor_z(lin, i) for i in range(lin.k))
        return Verdict(
            "unrelated",
            z=rounded(z, 1),
            notes=[f"no candidate correlates with the child (best median Pearson r {best:.3f} on 2-D tensors)"],
        )
    if best < RELATED_R:
        return Verdict(
            "inconclusive",
            notes=[f"weak correlation only (best median Pearson r {best:.3f}): neither clearly related nor unrelated"],
        )

    # 5. sparse merges relative to a base
    choice = choose_base(lin, refs, base, declared)
    anc = choice.index
    sparse_b = anc if anc is not None else int(np.argmax(np.median(sparse_share, axis=0)))
    if lin.k >= 2 and is_sparse(sparse_share, sparse_b):
        sv = sparse_verdict(lin, refs, sparse_b, sparse_share, choice.source if anc is not None else None)
        if sv is not None:
            sv.notes = notes + sv.notes
            return sv

    # 6. dense fit: merge, or the whole-delta tests name the parent
    v = dense_verdict(lin, refs, choice, related_candidates(med_r, UNRELATED_R))
    v.notes = notes + v.notes
    return v


def _passthrough(lin: Lineage, refs: Sequence[str], matches: list[LayerSource]) -> Verdict:
    counts: dict[str, int] = {}
    named = [(m, m.ref) for m in matches if m.ref is not None]  # the caller checked: every layer has a source
    for _m, ref in named:
        counts[ref] = counts.get(ref, 0) + 1
    total = len(matches)
    v = Verdict("merge", method="passthrough", fit_r2=1.0)
    v.parents = [
        ParentWeight(ref=r, weight=round(c / total, 4), ci=(round(c / total, 4), round(c / total, 4)))
        for r, c in counts.items()
    ]
    v.layers = [
        LayerFit(layer=m.layer, weights={ref: 1.0}, r2=1.0, source=f"{ref}:{m.source_layer}") for m, ref in named
    ]
    v.z = rounded(max(ancestor_z(lin, refs.index(r)) for r in counts), 1)
    v.notes.append(
        f"every one of the child's {total} layers is an exact copy of a candidate layer; weights are shares of layers"
    )
    return v
