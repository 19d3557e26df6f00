"""The verdict the decision steps hand back to ``scan()`` (see relation.py), and its number rounding."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from provbot.detectors.weights.fit import GroupFit
from provbot.detectors.weights.result import (
    BaseSource,
    ComponentFit,
    DescentTest,
    LayerFit,
    Method,
    ParentWeight,
    RelatedModel,
    Relation,
)


@dataclass
class Verdict:
    relation: Relation
    method: Method | None = None
    parents: list[ParentWeight] = field(default_factory=list)
    fit_r2: float | None = None
    z: float | None = None
    base: str | None = None
    base_source: BaseSource | None = None
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


def finite(x: float | None, digits: int = 4) -> float:
    """``x`` rounded for a report field that must hold a number: NaN (JSON null) where :func:`rounded`
    gives None.

    >>> finite(0.123456), finite(None)
    (0.1235, nan)
    """
    r = rounded(x, digits)
    return math.nan if r is None else r


def parent_weight(ref: str, g: GroupFit, i: int) -> ParentWeight:
    """Candidate ``i`` of a group fit as a reported parent: median weight and its 95% CI."""
    return ParentWeight(ref=ref, weight=finite(g.weights[i]), ci=(finite(g.ci[i, 0]), finite(g.ci[i, 1])))


def ci_pair(ci: np.ndarray) -> tuple[float, float]:
    lo, hi = rounded(ci[0]), rounded(ci[1])
    return (lo if lo is not None else float("nan"), hi if hi is not None else float("nan"))
