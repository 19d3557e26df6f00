"""Per-layer and per-component fits of a verdict: what the report's tables and plots show."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from provbot.detectors.weights.fit import GroupFit, Lineage
from provbot.detectors.weights.result import ComponentFit, LayerFit
from provbot.detectors.weights.verdict import Verdict, ci_pair, finite, rounded


def group_weights(g: GroupFit | None, refs: Sequence[str]) -> dict[str, float]:
    return {} if g is None else {r: finite(g.weights[i]) for i, r in enumerate(refs)}


def breakdown(lin: Lineage, ref: int, refs: Sequence[str], subset: str, verdict: Verdict) -> None:
    """Per-layer and per-component fits (2-D tensors), weight spreads, and the 1-D tensors apart."""
    mats = lin.matrix_idx()
    by_layer: dict[int, list[int]] = defaultdict(list)
    by_component: dict[str, list[int]] = defaultdict(list)
    for i in mats:
        if (at := lin.layer[i]) is not None:
            by_layer[at].append(i)
        by_component[lin.component[i]].append(i)
    for layer in sorted(by_layer):
        g = lin.group(ref, by_layer[layer], subset)
        if g is not None:
            verdict.layers.append(
                LayerFit(
                    layer=layer,
                    weights=group_weights(g, refs),
                    r2=rounded(g.r2),
                    ci={r: ci_pair(g.ci[i]) for i, r in enumerate(refs)},
                )
            )
    for comp in sorted(by_component):
        g = lin.group(ref, by_component[comp], subset)
        if g is not None:
            verdict.components.append(
                ComponentFit(component=comp, tensors=g.tensors, weights=group_weights(g, refs), r2=rounded(g.r2))
            )
    g = lin.group(ref, mats, subset)
    if g is not None:
        verdict.weight_spread = {r: finite(g.spread[i]) for i, r in enumerate(refs)}
    vec = lin.group(ref, lin.vector_idx(), subset)
    if vec is not None:
        verdict.norms = group_weights(vec, refs)
