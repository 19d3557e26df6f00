"""Small statistics for claim rates.

>>> lo, hi = wilson_interval(79, 100)
>>> round(lo, 3), round(hi, 3)
(0.7, 0.858)
>>> wilson_interval(0, 0)
(0.0, 1.0)
"""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (95% by default); ``(0, 1)`` when ``n`` is 0.

    Chosen over the normal approximation because claim rates are often 0% or near 100%, where the
    normal interval collapses to a point or leaves [0, 1].
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
