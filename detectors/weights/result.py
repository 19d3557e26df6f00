"""The pydantic result of a weight-lineage scan (what ``provbot scan --json`` prints).

The first keys (child ... layers) are the stable public schema; the rest is supporting evidence
that reports and templates may show.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, computed_field

#: ``related``: the child shares lineage with the candidates (it is no independent model), but the
#: weights cannot say which of them is its parent; no candidate is named as one.
Relation = Literal["merge", "finetune", "copy", "quantized", "related", "unrelated", "inconclusive"]
Method = Literal["linear", "slerp", "task_arithmetic", "ties", "dare", "passthrough", "unknown"]
BaseSource = Literal["given", "declared", "inferred", "closest"]
Outcome = Literal["descends", "sibling", "undetermined"]


class ParentWeight(BaseModel):
    ref: str = Field(description="The model reference exactly as the user gave it.")
    weight: float = Field(description="Coefficient of this model in the fitted combination.")
    ci: tuple[float, float] = Field(description="95% confidence interval of the weight.")


class LayerFit(BaseModel):
    layer: int
    weights: dict[str, float] = Field(description="ref -> weight fitted on this layer's tensors.")
    r2: float | None = Field(description="Delta R^2 of the fit on this layer (None when undefined).")
    source: str | None = Field(None, description="Passthrough: 'ref:layer' this layer was copied from.")
    ci: dict[str, tuple[float, float]] = Field(default_factory=dict, description="ref -> 95% CI of the layer's weight.")


class LayerShare(BaseModel):
    layer: int
    share: float = Field(description="Median weight of the candidate's delta in this layer's 2-D tensors.")
    ci: tuple[float, float]


class DescentTest(BaseModel):
    """Does the child carry a candidate's whole delta from that candidate's base, in every layer?

    A descendant of ``ref`` (``ref`` plus further training) carries all of it: ``share`` near 1 or
    above, in every layer. A sibling (another fine-tune of ``base``) carries only the part of it
    that its own training happens to share: ``share`` below 1, wandering from layer to layer.
    """

    ref: str
    base: str = Field(description="The model the candidate's delta is taken from (its base, or the other candidate).")
    share: float = Field(description="Median over 2-D tensors of the child's fitted weight on ref - base.")
    ci: tuple[float, float] = Field(description="95% CI of share.")
    spread: float = Field(description="Robust sd of the per-tensor weights.")
    layers: list[LayerShare] = Field(default_factory=list)
    outcome: Outcome
    reason: str


class RelatedModel(BaseModel):
    """A candidate the child is related to but that the verdict does not name as a parent."""

    ref: str
    role: Literal["sibling", "candidate"] = Field(
        description="sibling: another descendant of the child's parent; candidate: related, role not determined."
    )
    share: float | None = Field(None, description="Weight of its delta (from the base) that the child carries.")
    ci: tuple[float, float] | None = None


class ComponentFit(BaseModel):
    component: str = Field(description="attention, mlp, expert, router, embedding, head, norm, other.")
    tensors: int
    weights: dict[str, float]
    r2: float | None


_REFERENCE = "The fit's reference candidate: the same value as 'base', under a name that claims no ancestry."


class ScanResult(BaseModel):
    child: str
    relation: Relation
    method: Method | None = None
    parents: list[ParentWeight] = Field(default_factory=list)
    fit_r2: float | None = Field(
        None, description="Delta R^2: the share of the child's delta from the base that the fit explains."
    )
    z: float | None = Field(
        None, description="Evidence against independence, in standard deviations (Stouffer over tensors)."
    )
    bytes_read: dict[str, int] = Field(default_factory=dict, description="ref -> bytes read (headers included).")
    tensors: int = Field(0, description="Number of tensors compared.")
    layers: list[LayerFit] = Field(default_factory=list)
    # Supporting evidence.
    base: str | None = Field(
        None,
        description=(
            "The fit's reference candidate (also given as 'reference'): the candidate the delta fit is taken "
            "from, NOT a finding that it is the child's base model. It is the shared ancestor only when "
            "base_source is given, declared or inferred; with 'closest' it is merely the candidate nearest the "
            "child. Kept under this name for compatibility."
        ),
    )
    base_source: BaseSource | None = Field(None, description="How base (the fit's reference) was chosen.")

    @computed_field(description=_REFERENCE)  # type: ignore[prop-decorator]
    @property
    def reference(self) -> str | None:
        return self.base

    components: list[ComponentFit] = Field(default_factory=list)
    weight_spread: dict[str, float] = Field(
        default_factory=dict, description="ref -> robust spread of per-tensor weights (consistency)."
    )
    norms: dict[str, float] | None = Field(None, description="Fit of 1-D tensors (norms, biases), reported separately.")
    density: float | None = Field(
        None, description="TIES/DARE: estimated share of each parent's delta elements the merge kept."
    )
    related: list[RelatedModel] = Field(
        default_factory=list, description="Related candidates not named as parents (siblings)."
    )
    descent: list[DescentTest] = Field(
        default_factory=list, description="Whole-delta tests behind finetune, sibling and related verdicts."
    )
    requests: dict[str, int] = Field(default_factory=dict, description="ref -> HTTP range requests made.")
    elements: int = Field(0, description="Elements compared per model.")
    seconds: float | None = None
    notes: list[str] = Field(default_factory=list, description="Why the verdict is what it is, in short sentences.")
