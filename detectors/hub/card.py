"""The one declared-lineage parser: ``base_model``, ``base_model_relation``, tags and the Hub's model tree.

Used for Hub answers (:attr:`~provbot.detectors.hub.models.ModelInfo.declared`), local folders
(:mod:`provbot.detectors.declared`, which reads the README's front matter) and the bot's findings.
Cards are written by strangers: anything malformed reads as "declares nothing", ids are kept only
when they are plain strings of sane length, and lists are capped.

>>> declared_from_card({"base_model": ["org/a", 7, "org/b"], "base_model_relation": "merge"}).base_models
['org/a', 'org/b']
>>> declared_from_hub(None, ["provbot-opt-out"], {"relation": "quantized", "models": [{"id": "org/a"}]}).relation
'quantized'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

#: Longest base_model id kept (Hub ids are at most 96 characters + "/" + namespace).
MAX_ID_CHARS = 200
#: Most base_model entries kept (a merge card lists its inputs; thousands is an attack, not a merge).
MAX_BASES = 64
#: The tag by which a repo's owners ask the bot not to comment.
OPT_OUT_TAG = "provbot-opt-out"


class Declared(BaseModel):
    """Lineage as the model's card declares it."""

    base_models: list[str] = Field(default_factory=list)
    relation: str | None = Field(None, description="base_model_relation: adapter, merge, quantized, finetune.")
    tags: list[str] = Field(default_factory=list)

    @property
    def opt_out(self) -> bool:
        """The owners tagged the repo ``provbot-opt-out``."""
        return OPT_OUT_TAG in self.tags


def _strings(value: Any, limit: int = MAX_BASES) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [v.strip() for v in items if isinstance(v, str) and 0 < len(v.strip()) <= MAX_ID_CHARS][:limit]


def _relation(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 32 else None


def card_dict(card: Any) -> dict[str, Any]:
    """Card data as a dict: a dict as is, huggingface_hub's ``ModelCardData`` through ``to_dict``, else {}."""
    to_dict = getattr(card, "to_dict", None)
    data = to_dict() if callable(to_dict) else card
    return data if isinstance(data, dict) else {}


def declared_from_card(card: Any, tags: list[str] | None = None) -> Declared:
    """Declared lineage from card data (the Hub's ``cardData`` or a parsed front matter) and repo tags."""
    data = card_dict(card)
    own = _strings(tags or [], 1000)
    return Declared(
        base_models=_strings(data.get("base_model")),
        relation=_relation(data.get("base_model_relation")),
        tags=own + [t for t in _strings(data.get("tags"), 1000) if t not in own],
    )


def declared_from_hub(card: Any, tags: list[str] | None, tree: Any) -> Declared:
    """Declared lineage of a Hub repo: its card, and the Hub's model tree (``baseModels``) when the card is silent."""
    declared = declared_from_card(card, tags)
    if isinstance(tree, dict) and not declared.base_models:
        models = tree.get("models")
        ids = [m.get("id") for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        declared.base_models = _strings(ids)
        declared.relation = declared.relation or _relation(tree.get("relation"))
    return declared
