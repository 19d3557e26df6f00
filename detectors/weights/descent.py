"""Descendant or sibling: does the child carry a candidate's *whole* delta from its base?

Let ``X`` be a fine-tune of ``B`` and ``C`` the child. The joint delta fit gives, per tensor, the
weight ``w`` of ``X - B`` in ``C - B`` (the raw coefficient of ``X``, the same whatever reference
the fit is solved from).

* A **descendant** of X (X plus further training ``e``) has ``w = 1 + <e, X - B> / |X - B|^2``:
  1 when its own training is unrelated to X's, above 1 when it continues in X's direction. Later
  training does not take back X's delta tensor by tensor: in the tests' descendants (2 to 60
  further steps, on X's task or another) no layer kept less than 0.95 of it.
* A **sibling** (another fine-tune of B) has ``w = cos(C - B, X - B) |C - B| / |X - B|``: the
  part of X's delta its own training happens to share. It is below 1 unless the sibling both
  correlates very strongly with X and moved further, and it wanders from layer to layer, because
  how much two trainings share differs between parts of the network.

So the rule, per candidate, with ``DESCENT_SHARE = 0.9``:

* ``descends``: the median weight's 95% CI lies above 0.9 and no layer's CI lies below
  ``LAYER_SHARE`` (0.8): the child carries the whole delta, consistently across tensors and layers;
* ``sibling``: the median weight's CI lies below 0.9: a clear part of X's own delta is missing;
* ``undetermined``: anything else (siblings whose training shared most of X's batches, heavy
  later training that took back part of X's delta).

One global correlation cannot make this call: a sibling trained on similar data can correlate with
X at 0.8 while a descendant's long second fine-tune correlates with X at 0.6; what separates
them is whether all of X's delta is there, in every layer.

>>> descent_outcome(ci=(0.95, 1.02), layer_cis=[(0.9, 1.1), (0.92, 1.0)])
'descends'
>>> descent_outcome(ci=(0.55, 0.68), layer_cis=[(0.4, 0.7), (0.6, 0.8)])
'sibling'
>>> descent_outcome(ci=(0.86, 0.95), layer_cis=[(0.8, 1.0)])
'undetermined'
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from provbot.detectors.weights.fit import Lineage
from provbot.detectors.weights.result import DescentTest, LayerShare, Outcome
from provbot.detectors.weights.verdict import ci_pair, finite, rounded

#: A descendant carries at least this share of its parent's delta (median over tensors, 95% CI).
DESCENT_SHARE = 0.9
#: ... and no layer clearly less than this (layers hold few tensors: a looser bound).
LAYER_SHARE = 0.8


def descent_outcome(ci: tuple[float, float], layer_cis: Sequence[tuple[float, float]]) -> Outcome:
    """``descends``, ``sibling`` or ``undetermined`` from the median weight's CI and the layers' CIs."""
    if ci[0] >= DESCENT_SHARE and not any(hi < LAYER_SHARE for _lo, hi in layer_cis):
        return "descends"
    if ci[1] < DESCENT_SHARE:
        return "sibling"
    return "undetermined"


def descent_test(lin: Lineage, refs: Sequence[str], i: int, base: int, also: Sequence[int] = ()) -> DescentTest:
    """Whole-delta test of candidate ``i`` against its base ``base`` (both indices into ``refs``).

    The fit uses ``i``, ``base`` and the candidates ``also`` (the others that move the child) only.
    """
    keep = [i, base, *[j for j in also if j not in (i, base)]]
    refs = [refs[j] for j in keep]
    lin, i, base = lin.subset(keep), 0, 1
    mats = lin.matrix_idx()
    g = lin.group(base, mats)
    assert g is not None
    by_layer: dict[int, list[int]] = defaultdict(list)
    for t in mats:
        if (at := lin.layer[t]) is not None:
            by_layer[at].append(t)
    layers: list[LayerShare] = []
    for layer in sorted(by_layer):
        lg = lin.group(base, by_layer[layer])
        if lg is not None:
            layers.append(LayerShare(layer=layer, share=finite(lg.weights[i]), ci=ci_pair(lg.ci[i])))
    ci = ci_pair(g.ci[i])
    outcome = descent_outcome(ci, [layer.ci for layer in layers])
    share = float(g.weights[i])
    x, b = refs[i], refs[base]
    low = [layer.layer for layer in layers if layer.ci[1] < LAYER_SHARE]
    span = f"; layers {min(l_.share for l_ in layers):.2f} to {max(l_.share for l_ in layers):.2f}" if layers else ""
    head = f"the child carries {share:.0%} of {x}'s delta from {b} (95% CI {ci[0]:.0%} to {ci[1]:.0%}{span})"
    if outcome == "descends":
        reason = f"{head}: all of it, in every layer, as a descendant of {x} does"
    elif outcome == "sibling":
        reason = f"{head}: part of {x}'s own delta is missing, as in a sibling (another fine-tune of {b})"
    elif low:
        reason = f"{head}: all of it overall, but not in layer(s) {', '.join(map(str, low[:5]))}"
    else:
        reason = f"{head}: too close to {DESCENT_SHARE:.0%} to tell a descendant from a sibling"
    return DescentTest(
        ref=x,
        base=b,
        share=finite(share),
        ci=ci,
        spread=rounded(g.spread[i]) or 0.0,
        layers=layers,
        outcome=outcome,
        reason=reason,
    )
