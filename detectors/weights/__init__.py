"""Weight-lineage detection: read the same sampled elements of several models, fit, classify.

Registered as the ``weights`` detector (``provbot.detectors.registry.get_detector("weights")``); the scan
itself is imported lazily, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

from provbot.detectors.registry import register_detector


@register_detector("weights")
def weights_detector(child: str, **kwargs: Any) -> Any:
    """:func:`provbot.detectors.weights.scan.scan` by name: ``get_detector("weights")(child, parents=[...])``."""
    from provbot.detectors.weights.scan import scan

    return scan(child, **kwargs)
