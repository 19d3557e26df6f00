"""The pydantic result of an identity test (what ``provbot identity --json`` prints).

Rendered by :func:`provbot.detectors.identity.render.render_identity_markdown` or directly in Jinja2 templates:
every rate comes with its Wilson 95% interval (``ci``) and its counts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from provbot.detectors.identity.aliases import ClaimKind
from provbot.detectors.identity.backends.base import BackendInfo
from provbot.detectors.identity.declared import DeclaredSource
from provbot.detectors.identity.names import name_key
from provbot.detectors.identity.overlap import OverlapScore
from provbot.detectors.identity.prompts import SamplingSettings

Condition = Literal["with_system", "without_system"]
Strength = Literal["strong", "moderate", "weak", "none"]
NameKind = Literal["name", "maker"]
NameSource = Literal["system_prompt", "card", "repo_name", "given"]
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
    own: bool = Field(False, description="The child's own declared name (from its system prompt, card or repo name).")
    learned: bool = Field(
        False, description="A candidate's persona learned from its answers, not listed in aliases.toml."
    )


class NameRate(Rate):
    """How often answers gave one name (or maker) for themselves, read open-vocabulary (any name, not only
    listed ones); spellings that differ only in case, spaces, hyphens or punctuation are merged."""

    key: str = Field(description="The merged spellings' key: casefolded letters and digits.")
    label: str = Field(description="The most frequent spelling (model output: untrusted text).")
    kind: NameKind
    spellings: list[str] = Field(default_factory=list, description="Spellings seen, most frequent first (up to 5).")
    family: str | None = Field(None, description="The listed family (aliases.toml) or learned persona it belongs to.")
    listed: bool = Field(False, description="The name is an alias in aliases.toml.")
    generic: bool = Field(False, description="A name many unrelated models claim (ChatGPT, OpenAI, ...).")


class SelfClaimRate(NameRate):
    """A name the child gave for itself, with what it matches."""

    declared: list[NameSource] = Field(
        default_factory=list,
        description="Where the child declares this name itself: system prompt, card, repo name, "
        "or given (own_names); empty when it is not one of its own names.",
    )
    candidates: list[str] = Field(
        default_factory=list, description="Candidates whose learned persona this name (or maker) is."
    )


class ClaimedPersona(BaseModel):
    """Who the child says it is in one condition: its most frequent self-claimed name and maker."""

    name: SelfClaimRate | None = None
    maker: SelfClaimRate | None = None


class LearnedPersona(BaseModel):
    """A candidate's own persona, learned from its answers without a system prompt."""

    name: NameRate | None = Field(None, description="Its dominant self-claimed name (rate among its own answers).")
    maker: NameRate | None = Field(None, description="Its dominant self-claimed maker (rate among its own answers).")
    family: str | None = Field(None, description="Listed family of the name or maker, else the learned family key.")
    listed: bool = Field(False, description="The persona is a family of aliases.toml.")


class DeclaredName(BaseModel):
    """A name the child declares for itself, and where."""

    name: str
    source: NameSource


class AnswerRecord(BaseModel):
    prompt_id: str
    sample: int
    text: str | None = Field(description="None when the backend failed on this chat.")
    claims: list[str] = Field(default_factory=list, description="Claim labels found in the text.")
    self_names: list[str] = Field(
        default_factory=list, description="Names the answer gives for itself (open vocabulary)."
    )
    self_makers: list[str] = Field(
        default_factory=list, description="Makers the answer gives for itself (open vocabulary)."
    )


class ConditionResult(BaseModel):
    condition: Condition
    system_prompt: str | None
    answered: int
    failed: int = 0
    claims: list[ClaimRate] = Field(default_factory=list, description="Sorted by rate, highest first.")
    families: list[FamilyRate] = Field(default_factory=list, description="Sorted by rate, highest first.")
    dominant_family: str | None = Field(None, description="Most claimed non-generic family (the child's own excluded).")
    own: FamilyRate | None = Field(None, description="Rate of the child's own name.")
    self_names: list[SelfClaimRate] = Field(
        default_factory=list,
        description="Every name the answers give for themselves, listed or not; by rate, highest first.",
    )
    self_makers: list[SelfClaimRate] = Field(
        default_factory=list,
        description="Every maker the answers give for themselves, listed or not; by rate, highest first.",
    )
    self_named: Rate | None = Field(None, description="Answers that give any name for themselves.")
    persona: ClaimedPersona | None = Field(None, description="The child's dominant self-claimed name and maker here.")
    answers: list[AnswerRecord] = Field(default_factory=list)

    def family(self, key: str) -> FamilyRate | None:
        return next((f for f in self.families if f.family == key), None)

    def claim(self, label: str) -> ClaimRate | None:
        return next((c for c in self.claims if c.label == label), None)

    def self_name(self, name: str) -> SelfClaimRate | None:
        """The rate of one self-claimed name, any spelling: ``c.self_name("nex agi")`` finds "Nex-AGI"."""
        key = name_key(name)
        return next((r for r in [*self.self_names, *self.self_makers] if r.key == key), None)


class CandidateEvidence(BaseModel):
    """The child compared with one candidate original."""

    ref: str
    revision: str | None = None
    family: str | None = Field(
        None,
        description="The family the candidate claims itself: listed in aliases.toml, "
        "or learned from its answers (key 'learned:<name>').",
    )
    family_generic: bool = False
    family_label: str | None = Field(None, description="The family's display name (model output when learned).")
    persona: LearnedPersona | None = Field(None, description="The candidate's persona, learned from its own answers.")
    claim: FamilyRate | None = Field(
        None, description="Child, without system prompt: rate of claiming the candidate's family."
    )
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
    declared_names: list[DeclaredName] = Field(
        default_factory=list, description="The child's own names and their sources."
    )
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
        return max(
            self.candidates, key=lambda c: (STRENGTH_ORDER[c.strength], c.claim.rate if c.claim else 0.0, c.ratio)
        )
