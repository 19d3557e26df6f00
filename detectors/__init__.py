"""Detectors: the tests provbot runs on a model's weights and on its behaviour.

Public entry points (pydantic results, usable from Python)::

    from detectors import scan
    result = scan("org/child", parents=["org/a", "org/b"])
    print(result.relation, result.parents)
"""

from __future__ import annotations

from detectors.errors import ProvbotError

__all__ = ["ProvbotError", "scan"]


def scan(*args, **kwargs):
    """Weight-lineage scan; see :func:`detectors.weights.scan.scan`."""
    from detectors.weights.scan import scan as _scan

    return _scan(*args, **kwargs)
