"""Identity detector: what a model says it is, with and without its system prompt (docs/identity.md).

>>> from detectors.identity import run_identity, render_identity_markdown   # doctest: +SKIP
>>> result = run_identity("org/child", candidates=["org/original"], samples=3)  # doctest: +SKIP
>>> print(render_identity_markdown(result))                                    # doctest: +SKIP
"""

from __future__ import annotations

from detectors.identity.feasibility import Feasibility, can_run_identity
from detectors.identity.render import render_identity_markdown
from detectors.identity.result import CandidateEvidence, ClaimRate, ConditionResult, FamilyRate, IdentityResult
from detectors.identity.runner import DECLARED, run_identity
from detectors.registry import register_detector

register_detector("identity")(run_identity)

__all__ = [
    "DECLARED",
    "Feasibility",
    "can_run_identity",
    "CandidateEvidence",
    "ClaimRate",
    "ConditionResult",
    "FamilyRate",
    "IdentityResult",
    "render_identity_markdown",
    "run_identity",
]
