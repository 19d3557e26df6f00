"""Versioned identity prompt sets (``config/prompts/identity-v*.toml``).

A prompt set is frozen once released: results record its version and sampling settings, so that two
runs can be compared. Change prompts by adding a new file.

>>> ps = load_prompt_set("identity-v1")
>>> ps.version, len(ps.prompts) >= 30, ps.sampling.temperature
('identity-v1', True, 0.7)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from provbot.detectors.errors import ConfigError
from provbot.detectors.resources import CONFIG_DIR, load_toml

PromptKind = Literal["who", "name", "maker", "creators"]


class SamplingSettings(BaseModel):
    """How each prompt is sampled; recorded in every result."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(200, ge=1, le=4096)
    seed: int = 0
    samples: int = Field(3, ge=1, le=100, description="Times each prompt is asked per condition.")


class Prompt(BaseModel):
    id: str
    lang: str
    kind: PromptKind
    text: str = Field(min_length=1)


class PromptSet(BaseModel):
    version: str
    sampling: SamplingSettings = SamplingSettings()
    prompts: list[Prompt] = Field(min_length=1)
    baseline_texts: list[str] = Field(default_factory=list, description="Answers of made-up unrelated assistants.")

    @model_validator(mode="after")
    def _unique_ids(self) -> PromptSet:
        ids = [p.id for p in self.prompts]
        if len(ids) != len(set(ids)):
            raise ValueError("prompt ids must be unique")
        return self

    def subset(self, limit: int | None = None, langs: list[str] | None = None) -> PromptSet:
        """A smaller set (first ``limit`` prompts, optionally only some languages), for quick runs.

        >>> load_prompt_set().subset(limit=4).prompts[0].id
        'en-who-1'
        """
        prompts = [p for p in self.prompts if not langs or p.lang in langs]
        if limit is not None:
            prompts = prompts[:limit]
        if not prompts:
            raise ConfigError("the prompt subset is empty")
        return self.model_copy(update={"prompts": prompts})


def load_prompt_set(name: str = "identity-v1") -> PromptSet:
    """Load a prompt set by version name (``config/prompts/<name>.toml``) or by path to a TOML file."""
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / "prompts" / f"{name}.toml"
    raw = load_toml(path, "prompt set")
    raw["baseline_texts"] = (raw.pop("baseline", None) or {}).get("texts", [])
    try:
        return PromptSet.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"prompt set {path} is invalid at {where}: {first['msg']}") from None
