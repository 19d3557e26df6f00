"""Lineage a local model folder declares: its README's front matter and mergekit's config file.

The lineage itself is parsed by the one parser, :mod:`provbot.detectors.hub.card` (Hub answers use
it too); this module reads the front matter. Cards are written by strangers: the YAML front matter
is read from at most ``MAX_FRONT_MATTER`` bytes, without YAML aliases (a few lines of aliases can
expand to gigabytes), and anything malformed reads as "declares nothing" rather than an error.

>>> parse_front_matter("---\\nbase_model: a/b\\ntags: [merge]\\n---\\n# Card")
{'base_model': 'a/b', 'tags': ['merge']}
>>> declared_from_card({"base_model": ["org/a", 7, "org/b"], "base_model_relation": "merge"}).base_models
['org/a', 'org/b']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provbot.detectors.hub.card import Declared, declared_from_card

__all__ = ["MAX_FRONT_MATTER", "Declared", "declared_from_card", "declared_from_folder", "parse_front_matter"]

#: Bytes of a README read for its front matter (cards put it first; the Hub's own limit is similar).
MAX_FRONT_MATTER = 64 * 1024


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
