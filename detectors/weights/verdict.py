"""The verdict the decision steps hand back to ``scan()`` (see relation.py), and its number rounding."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from provbot.detectors.weights.fit import GroupFit
from provbot.detectors.weights.result import ComponentFit, DescentTest, LayerFit, ParentWeight, RelatedModel


@dataclass
class Verdict:
    relation: str
    method: str | None = None
    parents: list[ParentWeight] = field(default_factory=list)
    fit_r2: float | None = None
    z: float | None = None
    base: str | None = None
    base_source: str | None = None
    layers: list[LayerFit] = field(default_factory=list)
    components: list[ComponentFit] = field(default_factory=list)
    weight_spread: dict[str, float] = field(default_factory=dict)
    norms: dict[str, float] | None = None
    density: float | None = None
    related: list[RelatedModel] = field(default_factory=list)
    descent: list[DescentTest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rounded(x: float | None, digits: int = 4) -> float | None:
    """``x`` rounded for the report; None for None, NaN and infinities.

    >>> rounded(0.123456), rounded(float("nan"))
    (0.1235, None)
    """
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def parent_weight(ref: str, g: GroupFit, i: int) -> ParentWeight:
    """Candidate ``i`` of a group fit as a reported parent: median weight and its 95% CI."""
    return ParentWeight(ref=ref, weight=rounded(g.weights[i]), ci=(rounded(g.ci[i, 0]), rounded(g.ci[i, 1])))


def ci_pair(ci: np.ndarray) -> tuple[float, float]:
    lo, hi = rounded(ci[0]), rounded(ci[1])
    return (lo if lo is not None else float("nan"), hi if hi is not None else float("nan"))
