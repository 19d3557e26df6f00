"""The names a model declares for itself outside its system prompt: its model card and its repo name.

From the card (``README.md``): the front matter's ``model_name`` and ``model-index`` names, and the first
heading; from the repo or folder name, its first word. Each gives one name token, the first word that
is a plausible name (``Rio-3.5-Open-397B`` -> ``Rio``; "Model card for Nova" -> ``Nova``).

>>> repo_name_token("prefeitura-rio/Rio-3.5-Open-397B"), name_token("# Model Card for Nova 7B"), name_token("7B")
('Rio', 'Nova', None)
"""

from __future__ import annotations

import re
from pathlib import Path

from provbot.detectors.declared import parse_front_matter
from provbot.detectors.identity.result import DeclaredName

_MAX_CARD_BYTES = 256 * 1024  # front matter and the first heading sit at the top
_NOT_NAMES = {"model", "the", "about", "introduction", "overview", "readme", "description", "card", "a", "an"}
_CARD_PREFIX = re.compile(r"^\s*#*\s*(?:model\s+card\s+(?:for|of)\s+)?", re.IGNORECASE)
_HEADING = re.compile(r"^#\s+(.{1,200})$", re.MULTILINE)


def name_token(text: str | None) -> str | None:
    """The first word of a card field or heading, when it looks like a name (3+ letters)."""
    if not text:
        return None
    token = re.split(r"[-_.\s]", _CARD_PREFIX.sub("", text, count=1), maxsplit=1)[0]
    if not (token.isalpha() and len(token) >= 3) or token.casefold() in _NOT_NAMES:
        return None
    return token


def repo_name_token(ref: str) -> str | None:
    """The first word of a repo or folder name: ``org/Rio-3.5-Open@main`` -> ``Rio``."""
    return name_token(Path(ref.partition("@")[0].rstrip("/")).name)


def card_names(model_dir: Path | None) -> list[DeclaredName]:
    """Names the model card in ``model_dir`` gives its model (none when there is no card)."""
    if model_dir is None or not (model_dir / "README.md").is_file():
        return []
    with (model_dir / "README.md").open("rb") as fh:
        text = fh.read(_MAX_CARD_BYTES).decode("utf-8", errors="replace")
    meta = parse_front_matter(text)
    values: list[object] = [meta.get("model_name")]
    index = meta.get("model-index")
    if isinstance(index, list):
        values += [entry.get("name") for entry in index[:10] if isinstance(entry, dict)]
    body = text.split("\n---", 1)[-1] if text.startswith("---") else text
    heading = _HEADING.search(body)
    if heading:
        values.append(heading.group(1))
    names = [t for v in values if isinstance(v, str) and (t := name_token(v))]
    return [DeclaredName(name=n, source="card") for n in dict.fromkeys(names)]
