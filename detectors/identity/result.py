"""The pydantic result of an identity test (what ``provbot identity --json`` prints).

Rendered by :func:`detectors.identity.render.render_identity_markdown` or directly in Jinja2 templates:
every rate comes with its Wilson 95% interval (``ci``) and its counts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from detectors.identity.aliases import ClaimKind
from detectors.identity.backends.base import BackendInfo
from detectors.identity.declared import DeclaredSource
from detectors.identity.overlap import OverlapScore
from detectors.identity.prompts import SamplingSettings

Condition = Literal["with_system", "without_system"]
Strength = Literal["strong", "moderate", "weak", "none"]
STRENGTH_ORDER: dict[str, int] = {"none": 0, "weak": 1, "moderate": 2, "strong": 3}


class Rate(BaseModel):
    count: int
    n: int
    rate: float
    ci: tuple[float, float] = Field(description="Wilson 95% interval of the rate.")


class ClaimRate(Rate):
    """How often answers made one claim (a name or organisation label)."""

    label: str
    family: str
    kind: ClaimKind
    generic: bool = False


class FamilyRate(Rate):
    """How often answers claimed a family at all (any of its names or organisations)."""

    family: str
    label: str = Field("", description="The family's display name (its first name alias).")
    generic: bool = False
    own: bool = Field(False, description="The child's own declared name (from its system prompt or repo name).")


class AnswerRecord(BaseModel):
    prompt_id: str
    sample: int
    text: str | None = Field(description="None when the backend failed on this chat.")
    claims: list[str] = Field(default_factory=list, description="Claim labels found in the text.")


class ConditionResult(BaseModel):
    condition: Condition
    system_prompt: str | None
    answered: int
    failed: int = 0
    claims: list[ClaimRate] = Field(default_factory=list, description="Sorted by rate, highest first.")
    families: list[FamilyRate] = Field(default_factory=list, description="Sorted by rate, highest first.")
    dominant_family: str | None = Field(None, description="Most claimed non-generic family (the child's own excluded).")
    own: FamilyRate | None = Field(None, description="Rate of the child's own name.")
    answers: list[AnswerRecord] = Field(default_factory=list)

    def family(self, key: str) -> FamilyRate | None:
        return next((f for f in self.families if f.family == key), None)

    def claim(self, label: str) -> ClaimRate | None:
        return next((c for c in self.claims if c.label == label), None)


class CandidateEvidence(BaseModel):
    """The child compared with one candidate original."""

    ref: str
    revision: str | None = None
    family: str | None = Field(None, description="The family the candidate claims itself (its dominant claim).")
    family_generic: bool = False
    claim: FamilyRate | None = Field(None, description="Child, without system prompt: rate of claiming the candidate's family.")
    overlap: OverlapScore = Field(description="Child's answers (no system prompt) vs the candidate's.")
    baseline: OverlapScore = Field(description="Unrelated answers vs the candidate's: chance-level overlap.")
    ratio: float = Field(description="overlap.containment / max(baseline.containment, 0.01).")
    verbatim: bool = Field(description="Backstory recitation: overlap far above the baseline with long shared runs.")
    strength: Strength
    cached: bool = Field(False, description="The candidate's answers came from the cache.")
    notes: list[str] = Field(default_factory=list)


class IdentityResult(BaseModel):
    child: str
    backend: BackendInfo
    prompt_set: str
    prompts: int
    sampling: SamplingSettings
    system_prompt: str | None = Field(None, description="The system prompt used in the with_system condition.")
    system_prompt_source: DeclaredSource | None = None
    own_names: list[str] = Field(default_factory=list)
    conditions: list[ConditionResult]
    candidates: list[CandidateEvidence] = Field(default_factory=list)
    baseline_source: str = Field(description="What the overlap baseline was computed from.")
    verdict: Strength
    summary: str = Field(description="One sentence for people.")
    notes: list[str] = Field(default_factory=list)
    generations: int = 0
    seconds: float | None = None

    def condition(self, name: Condition) -> ConditionResult | None:
        return next((c for c in self.conditions if c.condition == name), None)

    def top_candidate(self) -> CandidateEvidence | None:
        if not self.candidates:
            return None
        return max(self.candidates, key=lambda c: (STRENGTH_ORDER[c.strength], c.claim.rate if c.claim else 0.0, c.ratio))
