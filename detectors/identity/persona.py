"""Personas from self-claims: rates of every claimed name, a candidate's learned persona, what a name matches.

A candidate's persona is what it says it is without a system prompt: its most frequent self-claimed name
and maker (open vocabulary, spellings merged), kept when at least ``PERSONA_MIN_COUNT`` answers and
``PERSONA_MIN_RATE`` of them claim it. A persona listed in aliases.toml keeps its family; any other
becomes a *learned* family (``learned:<key>``) whose spellings are then counted in the child's answers
exactly as listed aliases are.

>>> from provbot.detectors.identity.aliases import load_aliases
>>> persona, family = learn_persona(["I am Zorvex, made by Kallo Works."] * 3 + ["Kallo-Works built me."],
...                                 load_aliases())
>>> persona.name.label, persona.maker.label, persona.maker.count, persona.family
('Zorvex', 'Kallo Works', 4, 'learned:zorvex')
>>> family.names, family.orgs
(['Zorvex'], ['Kallo Works', 'Kallo-Works'])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from provbot.detectors.identity.aliases import SELF_FAMILY, AliasTable, Family
from provbot.detectors.identity.names import key_prefixes, name_key
from provbot.detectors.identity.result import (
    DeclaredName,
    LearnedPersona,
    NameKind,
    NameRate,
    NameSource,
    SelfClaimRate,
)
from provbot.detectors.identity.selfclaims import SelfClaims, extract_self_claims
from provbot.detectors.identity.stats import wilson_interval

LEARNED_PREFIX = "learned:"
PERSONA_MIN_COUNT = 2
PERSONA_MIN_RATE = 0.2
MAX_SPELLINGS = 5


@dataclass
class NameTally:
    """Answers that claim one name (any spelling), and how each spelling was written."""

    key: str
    count: int = 0
    spellings: Counter[str] = field(default_factory=Counter)

    @property
    def label(self) -> str:
        # Most frequent spelling; ties go to the one seen first (Counter keeps insertion order).
        return self.spellings.most_common(1)[0][0]


def tally(claims: list[SelfClaims], kind: NameKind) -> list[NameTally]:
    """Per name key, the answers claiming it, most claimed first (ties: by key, so results are stable)."""
    out: dict[str, NameTally] = {}
    for c in claims:
        for name in c.names if kind == "name" else c.makers:
            t = out.setdefault(name_key(name), NameTally(key=name_key(name)))
            t.count += 1  # extraction keeps one spelling per key and answer
            t.spellings[name] += 1
    return sorted(out.values(), key=lambda t: (-t.count, t.key))


def name_rate(t: NameTally, n: int, kind: NameKind, table: AliasTable) -> dict[str, Any]:
    """The fields of a :class:`NameRate` for one tally among ``n`` answers."""
    hit = table.lookup(t.label)
    return {
        "key": t.key,
        "label": t.label,
        "kind": kind,
        "count": t.count,
        "n": n,
        "rate": t.count / n if n else 0.0,
        "ci": wilson_interval(t.count, n),
        "spellings": [s for s, _ in t.spellings.most_common(MAX_SPELLINGS)],
        "family": hit.family if hit else None,
        "listed": bool(hit and not hit.learned and hit.family != SELF_FAMILY),
        "generic": bool(hit and hit.generic),
    }


def _dominant(tallies: list[NameTally], n: int, table: AliasTable) -> NameTally | None:
    """The persona's name or maker: enough support, non-generic preferred."""
    ok = [t for t in tallies if t.count >= PERSONA_MIN_COUNT and t.count >= PERSONA_MIN_RATE * n]
    ok.sort(key=lambda t: (bool((h := table.lookup(t.label)) and h.generic), -t.count, t.key))
    return ok[0] if ok else None


def learn_persona(texts: list[str], table: AliasTable) -> tuple[LearnedPersona | None, Family | None]:
    """A candidate's persona from its own answers, and the learned family to add to the table (None when
    the persona is listed, is the child's own name, or the candidate gives no consistent name or maker)."""
    claims = [extract_self_claims(t) for t in texts]
    n = len(texts)
    top_name = _dominant(tally(claims, "name"), n, table)
    top_maker = _dominant(tally(claims, "maker"), n, table)
    name = NameRate(**name_rate(top_name, n, "name", table)) if top_name else None
    maker = NameRate(**name_rate(top_maker, n, "maker", table)) if top_maker else None
    # The name decides the family; a maker alone only when the candidate never names itself.
    head = name if name is not None else maker
    if head is None:
        return None, None
    if head.family is not None:
        return LearnedPersona(name=name, maker=maker, family=head.family, listed=head.listed), None
    family = Family(
        names=list(top_name.spellings) if top_name else [],
        # A listed maker (a fine-tune that still says "made by Alibaba Cloud") stays with its own family.
        orgs=list(top_maker.spellings) if top_maker and maker and maker.family is None else [],
        learned=True,
    )
    return LearnedPersona(name=name, maker=maker, family=LEARNED_PREFIX + head.key, listed=False), family


class NameContext:
    """What a self-claimed name can match: the child's declared names, and the candidates' personas."""

    def __init__(self, declared: list[DeclaredName], personas: dict[str, LearnedPersona | None]) -> None:
        self._declared: dict[str, list[NameSource]] = {}
        for d in declared:
            sources = self._declared.setdefault(name_key(d.name), [])
            if d.source not in sources:
                sources.append(d.source)
        self._personas: dict[str, list[str]] = {}
        for ref, p in personas.items():
            for part in (p.name, p.maker) if p else ():
                if part is not None and ref not in self._personas.get(part.key, []):
                    self._personas.setdefault(part.key, []).append(ref)

    def declared(self, name: str) -> list[NameSource]:
        """Where the child declares ``name`` (or, for "Rio 3.5", its leading "Rio") itself."""
        return list(next((self._declared[k] for k in key_prefixes(name) if k in self._declared), []))

    def candidates(self, name: str) -> list[str]:
        """Candidates whose persona's name or maker is ``name`` (or its leading parts)."""
        return list(next((self._personas[k] for k in key_prefixes(name) if k in self._personas), []))

    def self_claim_rates(
        self, tallies: list[NameTally], n: int, kind: NameKind, table: AliasTable
    ) -> list[SelfClaimRate]:
        return [
            SelfClaimRate(
                **name_rate(t, n, kind, table), declared=self.declared(t.label), candidates=self.candidates(t.label)
            )
            for t in tallies
        ]
