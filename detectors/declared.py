"""Lineage as a model card declares it: ``base_model``, ``base_model_relation`` and tags.

One parser for every place that reads a card: Hub answers (``ModelInfo.card_data`` and the Hub's
model tree), local folders (``README.md`` front matter, mergekit's config file) and the local Hub
server. Cards are written by strangers: the YAML front matter is read from at most
``MAX_FRONT_MATTER`` bytes, without YAML aliases (a few lines of aliases can expand to gigabytes),
and anything malformed reads as "declares nothing" rather than an error.

>>> parse_front_matter("---\\nbase_model: a/b\\ntags: [merge]\\n---\\n# Card")
{'base_model': 'a/b', 'tags': ['merge']}
>>> declared_from_card({"base_model": ["org/a", 7, "org/b"], "base_model_relation": "merge"}).base_models
['org/a', 'org/b']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

#: Bytes of a README read for its front matter (cards put it first; the Hub's own limit is similar).
MAX_FRONT_MATTER = 64 * 1024
#: Longest base_model id kept (Hub ids are at most 96 characters + "/" + namespace).
MAX_ID_CHARS = 200
#: Most base_model entries kept (a merge card lists its inputs; thousands is an attack, not a merge).
MAX_BASES = 64


class Declared(BaseModel):
    """Lineage as the model's card declares it."""

    base_models: list[str] = Field(default_factory=list)
    relation: str | None = Field(None, description="base_model_relation: adapter, merge, quantized, finetune.")
    tags: list[str] = Field(default_factory=list)


def _load_yaml(text: str) -> object:
    """YAML as data, refusing aliases: ``&a [*a, *a, ...]`` chains grow exponentially when expanded.

    Events are checked for aliases first, then the document is built; both in libyaml's C parser
    when PyYAML has it (a 64 KiB card then parses in milliseconds, not seconds). PyYAML is imported
    only when a card is actually read.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not accepted in model cards")
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader, aliases refused above


def parse_front_matter(text: str) -> dict[str, Any]:
    """YAML front matter of a model card (``---`` ... ``---``) as JSON-like data; {} when absent or bad."""
    if not text.startswith("---"):
        return {}
    lines = text[:MAX_FRONT_MATTER].splitlines()
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        return {}
    import yaml

    try:
        data = _load_yaml("\n".join(lines[1:end]))
    except (yaml.YAMLError, RecursionError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # Dates and the like become strings so the result is JSON-serialisable.
    try:
        plain = json.loads(json.dumps(data, default=str))
    except (ValueError, RecursionError):
        return {}
    return plain if isinstance(plain, dict) else {}


def _strings(value: Any, limit: int = MAX_BASES) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [v.strip() for v in items if isinstance(v, str) and 0 < len(v.strip()) <= MAX_ID_CHARS][:limit]


def declared_from_card(card: dict[str, Any] | None, tags: list[str] | None = None) -> Declared:
    """Declared lineage from card data (a dict as the Hub's ``cardData`` or a parsed front matter)."""
    card = card if isinstance(card, dict) else {}
    relation = card.get("base_model_relation")
    all_tags = _strings(tags or [], 1000) + [t for t in _strings(card.get("tags"), 1000) if t not in (tags or [])]
    return Declared(
        base_models=_strings(card.get("base_model")),
        relation=relation if isinstance(relation, str) and len(relation) <= 32 else None,
        tags=all_tags,
    )


def declared_from_info(info: Any) -> Declared:
    """Declared lineage from a huggingface_hub ``ModelInfo`` (card data, tags and the Hub's model tree)."""
    raw = getattr(info, "card_data", None)
    to_dict = getattr(raw, "to_dict", None)
    card = to_dict() if callable(to_dict) else raw
    card = card if isinstance(card, dict) else {}
    tags = [t for t in (getattr(info, "tags", None) or []) if isinstance(t, str)]
    declared = declared_from_card(card, tags)
    tree = getattr(info, "base_models", None)
    if isinstance(tree, dict) and not declared.base_models:
        models = tree.get("models")
        ids = [m.get("id") for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        declared.base_models = _strings(ids)
        if declared.relation is None and isinstance(tree.get("relation"), str) and len(tree["relation"]) <= 32:
            declared.relation = tree["relation"]
    return declared


def declared_from_folder(folder: str | Path) -> Declared:
    """Declared lineage of a local model folder: README front matter, and mergekit's config file."""
    folder = Path(folder)
    card: dict[str, Any] = {}
    readme = folder / "README.md"
    if readme.is_file():
        with readme.open("rb") as fh:
            card = parse_front_matter(fh.read(MAX_FRONT_MATTER).decode("utf-8", errors="replace"))
    declared = declared_from_card(card)
    if (folder / "mergekit_config.yml").is_file():
        declared.tags += [t for t in ("mergekit", "merge") if t not in declared.tags]
    return declared
