"""The pydantic result of a weight-lineage scan (what ``provbot scan --json`` prints).

The first keys (child ... layers) are the stable public schema; the rest is supporting evidence
that reports and templates may show.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Relation = Literal["merge", "finetune", "copy", "quantized", "unrelated", "inconclusive"]
Method = Literal["linear", "slerp", "task_arithmetic", "ties", "dare", "passthrough", "unknown"]


class ParentWeight(BaseModel):
    ref: str = Field(description="The model reference exactly as the user gave it.")
    weight: float = Field(description="Coefficient of this model in the fitted combination.")
    ci: tuple[float, float] = Field(description="95% confidence interval of the weight.")


class LayerFit(BaseModel):
    layer: int
    weights: dict[str, float] = Field(description="ref -> weight fitted on this layer's tensors.")
    r2: float | None = Field(description="Delta R^2 of the fit on this layer (None when undefined).")
    source: str | None = Field(None, description="Passthrough: 'ref:layer' this layer was copied from.")


class ComponentFit(BaseModel):
    component: str = Field(description="attention, mlp, expert, router, embedding, head, norm, other.")
    tensors: int
    weights: dict[str, float]
    r2: float | None


class ScanResult(BaseModel):
    child: str
    relation: Relation
    method: Method | None = None
    parents: list[ParentWeight] = Field(default_factory=list)
    fit_r2: float | None = Field(None, description="Delta R^2: the share of the child's delta from the base that the fit explains.")
    z: float | None = Field(None, description="Evidence against independence, in standard deviations (Stouffer over tensors).")
    bytes_read: dict[str, int] = Field(default_factory=dict, description="ref -> bytes read (headers included).")
    tensors: int = Field(0, description="Number of tensors compared.")
    layers: list[LayerFit] = Field(default_factory=list)
    # Supporting evidence.
    base: str | None = Field(None, description="The candidate used as shared ancestor for the delta fit.")
    components: list[ComponentFit] = Field(default_factory=list)
    weight_spread: dict[str, float] = Field(default_factory=dict, description="ref -> robust spread of per-tensor weights (consistency).")
    norms: dict[str, float] | None = Field(None, description="Fit of 1-D tensors (norms, biases), reported separately.")
    density: float | None = Field(None, description="TIES/DARE: share of delta elements the merge kept.")
    requests: dict[str, int] = Field(default_factory=dict, description="ref -> HTTP range requests made.")
    elements: int = Field(0, description="Elements compared per model.")
    seconds: float | None = None
    notes: list[str] = Field(default_factory=list, description="Why the verdict is what it is, in short sentences.")
