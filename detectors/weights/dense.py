"""The dense step: merge, fine-tune (of which candidate), sibling, or related without a named parent.

The child's delta is fitted on the candidates' deltas from a reference: the candidates' base when
it is known (given, declared or inferred: see ancestry.py), else the candidate closest to the child.

1. **merge**: two or more candidates besides the reference move the child (weight > 0.05, z > 5)
   with delta R^2 >= 0.8, or R^2 >= 0.3 and weights that stay the same from tensor to tensor
   (robust spread below 4% of each weight); or exactly one does, with R^2 >= 0.3 and a weight that
   stays within 4% of its distance to the nearer end, ``min(|w|, |1 - w|)`` (a blend of a model
   and its own base, the Rio case). One moving candidate alone needs this tighter consistency
   because a sibling that correlates strongly with it reaches R^2 0.8 too, but wanders.
2. Otherwise the whole-delta tests of descent.py decide who the parent is. With a known base: the
   one candidate the child carries whole (``descends``) is its parent; when every related
   candidate is only partly carried (``sibling``), the parent is the base and they are listed as
   siblings; anything else is ``related`` (lineage shared, parent not determined). Without a base,
   the closest candidate is the parent only if the child carries its whole delta from every other
   related candidate (whichever of the two is the other's base, the child then descends from it);
   else ``related``, with a hint to name the base.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from provbot.detectors.weights.ancestry import BaseChoice
from provbot.detectors.weights.breakdown import breakdown
from provbot.detectors.weights.descent import descent_test
from provbot.detectors.weights.fit import GroupFit, Lineage, fisher_z, pearson, stouffer
from provbot.detectors.weights.merge_methods import dense_method, rounding_share
from provbot.detectors.weights.result import DescentTest, ParentWeight, RelatedModel
from provbot.detectors.weights.verdict import Verdict, parent_weight, rounded

MERGE_R2 = 0.8  # delta R^2 that makes a merge of two or more moving candidates
MERGE_R2_CONSISTENT = 0.3  # ... or this much with consistent weights
CONSISTENT_SPREAD = 0.04  # robust sd of per-tensor weights, relative to the weight (merges: ~1%)
CONTRIBUTOR = 0.05  # |weight| that makes a candidate a parent of a merge
MIN_Z = 5.0  # a contributor must be this significant (Stouffer z)


def ancestor_z(lin: Lineage, j: int) -> float:
    """Stouffer combination of the Fisher-transformed Pearson r of child and candidate ``j``."""
    mats = lin.stats.take(lin.matrix_idx())
    return stouffer(np.asarray(fisher_z(pearson(mats)[:, j], mats.n)))


def _consistent(g: GroupFit, i: int, scale: float) -> bool:
    return bool(g.spread[i] < CONSISTENT_SPREAD * scale)


def is_merge(g: GroupFit, movers: Sequence[int], r2: float) -> bool:
    """Rule 1 of the module docs."""
    if len(movers) >= 2:
        consistent = all(_consistent(g, i, abs(g.weights[i])) for i in movers)
        return r2 >= MERGE_R2 or (r2 >= MERGE_R2_CONSISTENT and consistent)
    if len(movers) == 1:
        w = float(g.weights[movers[0]])
        return r2 >= MERGE_R2_CONSISTENT and _consistent(g, movers[0], min(abs(w), abs(1.0 - w)))
    return False


def dense_verdict(lin: Lineage, refs: Sequence[str], choice: BaseChoice, related: Sequence[int]) -> Verdict:
    """Merge / finetune / related verdict from the dense fit (``related``: candidates correlated with the child)."""
    mats = lin.matrix_idx()
    anc = choice.index
    ref = anc if anc is not None else lin.closest()
    g = lin.group(ref, mats)
    assert g is not None
    contributors = [i for i in range(lin.k) if abs(g.weights[i]) > CONTRIBUTOR]
    movers = [i for i in contributors if i != ref and g.z[i] > MIN_Z]
    r2 = g.r2 if g.r2 is not None else 0.0
    v = Verdict(
        "finetune", base=refs[ref], base_source=choice.source if anc is not None else "closest", fit_r2=rounded(g.r2)
    )
    if choice.note:
        v.notes.append(choice.note)
    breakdown(lin, ref, refs, "all", v)
    if is_merge(g, movers, r2):
        return _merge(lin, refs, ref, anc, g, contributors, movers, r2, v)
    if anc is not None:
        return _with_base(lin, refs, anc, related, movers, v)
    return _without_base(lin, refs, ref, related, movers, v)


def _merge(
    lin: Lineage,
    refs: Sequence[str],
    ref: int,
    anc: int | None,
    g: GroupFit,
    contributors: list[int],
    movers: list[int],
    r2: float,
    v: Verdict,
) -> Verdict:
    mats = lin.matrix_idx()
    consistent = all(_consistent(g, i, abs(g.weights[i])) for i in movers)
    v.relation = "merge"
    v.parents = [parent_weight(refs[i], g, i) for i in contributors]
    v.z = rounded(min(g.z[i] for i in movers), 1)
    v.method, why = dense_method(lin, ref, refs, g, contributors, anc, mats)
    v.notes.append(
        f"delta R^2 {r2:.4f} from {refs[ref]}; weights {'consistent' if consistent else 'vary'} across tensors"
    )
    v.notes.append(why)
    if r2 < 0.999:
        rounding = rounding_share(lin, ref, mats)
        if 1.0 - r2 <= 2.0 * rounding:
            v.notes.append(
                f"the unexplained {1 - r2:.2%} is what rounding the child to its storage dtype leaves "
                f"(expected {rounding:.2%}): an exact merge"
            )
        else:
            v.notes.append(
                "fit is high but imperfect: a merge trained a little afterwards, or a merge method beyond per-tensor linear"
            )
    return v


def _finetune_of(lin: Lineage, refs: Sequence[str], parent: int, v: Verdict) -> Verdict:
    # One ancestor: the child is that model plus its own delta, so its weight is 1 by definition.
    v.relation = "finetune"
    v.parents = [ParentWeight(ref=refs[parent], weight=1.0, ci=(1.0, 1.0))]
    v.z = rounded(ancestor_z(lin, parent), 1)
    return v


def _related(
    lin: Lineage, refs: Sequence[str], candidates: Sequence[int], v: Verdict, shares: dict[str, DescentTest]
) -> Verdict:
    """Lineage shared with ``candidates``, parent not determined: nobody is named as a parent."""
    v.relation, v.parents = "related", []
    v.z = rounded(max(ancestor_z(lin, i) for i in candidates), 1) if candidates else None
    v.related = [_related_model(refs[i], "candidate", shares.get(refs[i])) for i in candidates]
    return v


def _related_model(ref: str, role: Literal["sibling", "candidate"], test: DescentTest | None) -> RelatedModel:
    return RelatedModel(ref=ref, role=role, share=test.share if test else None, ci=test.ci if test else None)


def _with_base(
    lin: Lineage, refs: Sequence[str], anc: int, related: Sequence[int], movers: Sequence[int], v: Verdict
) -> Verdict:
    tests = [descent_test(lin, refs, i, anc, movers) for i in related if i != anc]
    v.descent = tests
    by_ref = {t.ref: t for t in tests}
    desc = [refs.index(t.ref) for t in tests if t.outcome == "descends"]
    others = [i for i in related if i != anc]
    if len(desc) == 1:
        parent = desc[0]
        v = _finetune_of(lin, refs, parent, v)
        v.related = [_related_model(refs[i], "candidate", by_ref.get(refs[i])) for i in others if i != parent]
        v.notes.append(by_ref[refs[parent]].reason)
        return v
    if all(t.outcome == "sibling" for t in tests):
        v = _finetune_of(lin, refs, anc, v)
        v.related = [_related_model(refs[i], "sibling", by_ref.get(refs[i])) for i in others]
        v.notes.append(
            f"the child is {refs[anc]} plus its own delta; the other candidates explain "
            f"{max(float(v.fit_r2 or 0.0), 0.0):.1%} of it"
        )
        v.notes += [t.reason for t in tests if t.share is not None and abs(t.share) > CONTRIBUTOR]
        return v
    v = _related(lin, refs, [anc, *others], v, by_ref)
    if len(desc) > 1:
        v.notes.append(
            "the child carries the whole deltas of "
            + ", ".join(refs[i] for i in desc)
            + ": a merge of them trained afterwards, or a sibling of them; the weights vary too much to tell"
        )
    v.notes += [t.reason for t in tests if t.outcome != "sibling"]
    v.notes.append(
        f"related to {refs[anc]} and its descendants among the candidates, but which of them is the "
        "parent cannot be told from the weights"
    )
    return v


def _without_base(
    lin: Lineage, refs: Sequence[str], ref: int, related: Sequence[int], movers: Sequence[int], v: Verdict
) -> Verdict:
    others = [j for j in related if j != ref]
    tests = [descent_test(lin, refs, ref, j, movers) for j in others]
    v.descent = tests
    if all(t.outcome == "descends" for t in tests):
        v = _finetune_of(lin, refs, ref, v)
        v.notes.append(
            f"closest candidate {refs[ref]}; the other candidates explain "
            f"{max(float(v.fit_r2 or 0.0), 0.0):.1%} of the child's delta from it"
        )
        v.related = [_related_model(refs[j], "candidate", None) for j in others]
        if tests:
            v.notes.append(
                f"the child carries the whole delta of {refs[ref]} from "
                + ", ".join(refs[j] for j in others)
                + " in every layer: it descends from it whichever is the base"
            )
        return v
    v = _related(lin, refs, [ref, *others], v, {})
    v.notes += [t.reason for t in tests if t.outcome != "descends"]
    v.notes.append(
        "the child sits between the candidates: it is a fine-tune of whichever of them is the others' base, "
        "which the weights cannot tell; scan again with the base as --base (or a base_model in the "
        "candidates' cards)"
    )
    return v


def related_candidates(med_r: np.ndarray, threshold: float) -> list[int]:
    """Candidates whose median Pearson r with the child reaches ``threshold``."""
    return [i for i, r in enumerate(med_r) if r >= threshold]
