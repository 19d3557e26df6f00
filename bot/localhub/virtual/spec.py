"""Typed spec of a virtual repo's recipe: what its tensor values are made of.

>>> from pydantic import TypeAdapter
>>> TypeAdapter(Recipe).validate_python({"kind": "base", "seed": 7}).kind
'base'
>>> TypeAdapter(Recipe).validate_python({"kind": "blend", "parts": {"a": 0.6, "b": 0.4}}).parts["a"]
0.6
>>> TypeAdapter(Recipe).validate_python({"kind": "gguf", "of": "a/b"}).quant
'Q4_K'
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class BaseRecipe(BaseModel):
    """Independent values drawn from ``seed``: a pretrained model nobody derived from."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["base"] = "base"
    seed: int = Field(ge=0)
    std: float = Field(default=0.02, gt=0)


class DeltaRecipe(BaseModel):
    """``base + scale * noise(seed)``: a fine-tune of another virtual repo."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["delta"] = "delta"
    base: str
    seed: int = Field(ge=0)
    scale: float = Field(default=0.002, gt=0)


class BlendRecipe(BaseModel):
    """A linear merge: the weighted sum of other virtual repos' values."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["blend"] = "blend"
    parts: dict[str, float] = Field(min_length=2)


class GgufRecipe(BaseModel):
    """One llama.cpp GGUF file quantizing another (safetensors) virtual repo of the same file."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["gguf"] = "gguf"
    of: str
    quant: Literal["Q4_K"] = "Q4_K"


Recipe = Annotated[BaseRecipe | DeltaRecipe | BlendRecipe | GgufRecipe, Field(discriminator="kind")]
