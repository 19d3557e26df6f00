"""Claimed names and organisations: alias lists per model family (``config/aliases.toml``).

A claim is a label (the first alias of its list) found in an answer. Names and organisations are
matched case-insensitively unless the family says otherwise, and on word boundaries where the alias
starts or ends with a Latin letter or digit (so "Nex" does not match "next"; CJK aliases match anywhere).

>>> table = load_aliases()
>>> sorted(c.label for c in table.extract("I am Nex, made by Nex-AGI."))
['Nex', 'Nex-AGI']
>>> [c.label for c in table.extract("I am the next assistant.")]
[]

Personas learned from a candidate's answers join the table as *learned* families (:meth:`AliasTable.with_learned`);
they match any spelling of their name (:func:`provbot.detectors.identity.names.spelling_pattern`).
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from provbot.detectors.errors import ConfigError
from provbot.detectors.identity.names import key_prefixes, name_key, spelling_pattern
from provbot.detectors.resources import CONFIG_DIR, load_toml

ClaimKind = Literal["name", "org", "generic"]
SELF_FAMILY = "self"
GENERIC_FAMILY = "generic"


class Family(BaseModel):
    """One model family's aliases; ``generic`` families (ChatGPT, Claude) are claimed by many unrelated models."""

    names: list[str] = Field(default_factory=list)
    orgs: list[str] = Field(default_factory=list)
    generic: bool = False
    case_sensitive: bool = False
    learned: bool = Field(False, description="Learned from a candidate's answers at run time, not from the file.")


class KeyHit(BaseModel, frozen=True):
    """The family a name's key belongs to (see :meth:`AliasTable.lookup`)."""

    family: str
    kind: ClaimKind
    generic: bool
    learned: bool


class Claim(BaseModel, frozen=True):
    family: str
    kind: ClaimKind
    label: str
    generic: bool = False


def _pattern(alias: str) -> str:
    """Regex for one alias, with word boundaries only on Latin/digit edges."""
    body = re.escape(alias)
    left = r"(?<![A-Za-z0-9])" if alias[:1].isascii() and alias[:1].isalnum() else ""
    right = r"(?![A-Za-z0-9])" if alias[-1:].isascii() and alias[-1:].isalnum() else ""
    return left + body + right


class AliasTable(BaseModel):
    families: dict[str, Family]
    generic_phrases: list[str] = Field(default_factory=list)

    def with_self_names(self, names: list[str]) -> AliasTable:
        """Add the child's own declared names (e.g. "Rio" from "You are Rio.") as the ``self`` family.

        A name that is already a known family's alias keeps that family, so its matching rules apply.
        """
        names = [n for n in dict.fromkeys(n.strip() for n in names) if n and self.family_of(n) is None]
        if not names:
            return self
        families = dict(self.families)
        families[SELF_FAMILY] = Family(names=names)
        # A fresh table, not model_copy: the compiled patterns are cached on the instance.
        return AliasTable(families=families, generic_phrases=self.generic_phrases)

    def with_learned(self, learned: dict[str, Family]) -> AliasTable:
        """Add personas learned from candidates' answers; one key learned twice merges its spellings."""
        if not learned:
            return self
        families = dict(self.families)
        for key, fam in learned.items():
            old = families.get(key)
            if old is not None:
                fam = Family(
                    names=list(dict.fromkeys(old.names + fam.names)),
                    orgs=list(dict.fromkeys(old.orgs + fam.orgs)),
                    learned=True,
                )
            families[key] = fam
        return AliasTable(families=families, generic_phrases=self.generic_phrases)

    @cached_property
    def _by_key(self) -> dict[str, KeyHit]:
        out: dict[str, KeyHit] = {}
        for fam_key, fam in self.families.items():
            pairs: tuple[tuple[ClaimKind, list[str]], ...] = (("name", fam.names), ("org", fam.orgs))
            for kind, aliases in pairs:
                for alias in aliases:
                    out.setdefault(
                        name_key(alias), KeyHit(family=fam_key, kind=kind, generic=fam.generic, learned=fam.learned)
                    )
        return out

    def lookup(self, name: str) -> KeyHit | None:
        """The family whose alias is spelled like ``name`` (any case, spaces, hyphens), if any; a versioned
        name falls back to its leading parts ("Llama 3" -> Llama, "DeepSeek-V3" -> DeepSeek).

        >>> t = load_aliases()
        >>> t.lookup("nex agi").family, t.lookup("Llama 3").family, t.lookup("Qwen2.5-Max").family
        ('nex', 'llama', 'qwen')
        >>> t.lookup("Zorvex") is None, t.lookup("Nexwen") is None
        (True, True)
        """
        return next((self._by_key[k] for k in key_prefixes(name) if k in self._by_key), None)

    def family_of(self, alias: str) -> str | None:
        """The family that lists ``alias`` as a name, if any (case-insensitive)."""
        low = alias.lower()
        for key, fam in self.families.items():
            if any(a.lower() == low for a in fam.names):
                return key
        return None

    @cached_property
    def _compiled(self) -> list[tuple[re.Pattern[str], Claim]]:
        out: list[tuple[re.Pattern[str], Claim]] = []
        for key, fam in self.families.items():
            flags = 0 if fam.case_sensitive else re.IGNORECASE
            pairs: tuple[tuple[ClaimKind, list[str]], ...] = (("name", fam.names), ("org", fam.orgs))
            for kind, aliases in pairs:
                if not aliases:
                    continue
                claim = Claim(family=key, kind=kind, label=aliases[0], generic=fam.generic)
                if fam.learned:
                    out.append((spelling_pattern(aliases), claim))
                    continue
                # Longest aliases first so "Alibaba Cloud" wins over "Alibaba" in one alternation.
                alts = "|".join(_pattern(a) for a in sorted(aliases, key=len, reverse=True))
                out.append((re.compile(alts, flags), claim))
        for phrase in self.generic_phrases:
            claim = Claim(family=GENERIC_FAMILY, kind="generic", label=phrase, generic=True)
            out.append((re.compile(_pattern(phrase), re.IGNORECASE), claim))
        return out

    def extract(self, text: str) -> list[Claim]:
        """Every distinct claim made in ``text`` (each counted once per answer)."""
        return [claim for pattern, claim in self._compiled if pattern.search(text)]


def load_aliases(path: str | Path | None = None) -> AliasTable:
    """Read the alias table (default ``config/aliases.toml``); raises ConfigError on a bad file."""
    path = Path(path) if path else CONFIG_DIR / "aliases.toml"
    raw = load_toml(path, "alias table")
    try:
        return AliasTable(
            families=raw.get("families", {}), generic_phrases=(raw.get("generic") or {}).get("phrases", [])
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"alias table {path} is invalid at {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
