"""Identity detector: what a model says it is, with and without its system prompt (docs/identity.md).

>>> from provbot.detectors.identity import run_identity, render_identity_markdown   # doctest: +SKIP
>>> result = run_identity("org/child", candidates=["org/original"], samples=3)  # doctest: +SKIP
>>> print(render_identity_markdown(result))                                    # doctest: +SKIP
>>> extract_self_claims("Soy Zorvex, creado por Kallo Works.")
SelfClaims(names=('Zorvex',), makers=('Kallo Works',))
"""

from __future__ import annotations

from provbot.detectors.identity.feasibility import Feasibility, can_run_identity
from provbot.detectors.identity.render import render_identity_markdown
from provbot.detectors.identity.result import (
    CandidateEvidence,
    ClaimedPersona,
    ClaimRate,
    ConditionResult,
    DeclaredName,
    FamilyRate,
    IdentityResult,
    LearnedPersona,
    NameRate,
    SelfClaimRate,
)
from provbot.detectors.identity.runner import DECLARED, run_identity
from provbot.detectors.identity.selfclaims import SelfClaims, extract_self_claims
from provbot.detectors.registry import register_detector

register_detector("identity")(run_identity)

__all__ = [
    "DECLARED",
    "Feasibility",
    "can_run_identity",
    "CandidateEvidence",
    "ClaimedPersona",
    "ClaimRate",
    "ConditionResult",
    "DeclaredName",
    "FamilyRate",
    "IdentityResult",
    "LearnedPersona",
    "NameRate",
    "SelfClaimRate",
    "SelfClaims",
    "extract_self_claims",
    "render_identity_markdown",
    "run_identity",
]
