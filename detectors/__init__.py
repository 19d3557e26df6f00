"""Detectors: the tests provbot runs on a model's weights and on its behaviour.

Public entry points (pydantic results, usable from Python)::

    from provbot.detectors import scan
    result = scan("org/child", parents=["org/a", "org/b"])
    print(result.relation, result.parents)
"""

from __future__ import annotations

import os

# huggingface_hub (2.x) otherwise asks huggingface.co for a registry of AI agents before its first
# request, whatever endpoint is configured: a call outside the Hub the bot was pointed at, and
# 50 ms or a 3 s timeout on a machine without Internet. Effective when set before huggingface_hub
# is first imported, which no module of this package does at import time.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from provbot.detectors.errors import ProvbotError  # noqa: E402

__all__ = ["ProvbotError", "scan"]


def scan(*args, **kwargs):
    """Weight-lineage scan; see :func:`provbot.detectors.weights.scan.scan`."""
    from provbot.detectors.weights.scan import scan as _scan

    return _scan(*args, **kwargs)
