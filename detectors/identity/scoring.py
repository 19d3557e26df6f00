"""From answers to evidence: claim rates per condition, candidate comparison, strength.

Weighing, in short (thresholds below are the constants of this module):

- a claim counts when its Wilson lower bound exceeds ``CLAIM_MIN_LOWER`` (it is not a fluke);
- *verbatim* recitation: n-gram containment at least ``VERBATIM_RATIO`` times the baseline and
  ``VERBATIM_MARGIN`` above it, with a shared run of at least ``VERBATIM_MIN_RUN`` words;
- a candidate is **strong** when the child, without its system prompt, claims the candidate's rare
  (non-generic) persona AND recites its answers verbatim; **moderate** with one of the two; **weak** when
  the persona is generic (ChatGPT, "an AI assistant") or only claimed now and then; else **none**.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from provbot.detectors.identity.aliases import GENERIC_FAMILY, SELF_FAMILY, AliasTable, ClaimKind
from provbot.detectors.identity.overlap import OverlapScore
from provbot.detectors.identity.persona import NameContext, tally
from provbot.detectors.identity.result import (
    AnswerRecord,
    CandidateEvidence,
    ClaimedPersona,
    ClaimRate,
    Condition,
    ConditionResult,
    FamilyRate,
    LearnedPersona,
    Rate,
    Strength,
)
from provbot.detectors.identity.selfclaims import SelfClaims, extract_self_claims
from provbot.detectors.identity.stats import wilson_interval

CLAIM_MIN_LOWER = 0.2
VERBATIM_RATIO = 3.0
VERBATIM_MARGIN = 0.15
VERBATIM_MIN_RUN = 8


def _rate(count: int, n: int) -> dict[str, Any]:
    return {"count": count, "n": n, "rate": count / n if n else 0.0, "ci": wilson_interval(count, n)}


def score_condition(
    condition: Condition,
    system_prompt: str | None,
    answers: list[AnswerRecord],
    table: AliasTable,
    own_families: set[str],
    names: NameContext | None = None,
) -> ConditionResult:
    """Fill in claims for each answer, then the rates. Failed chats (text None) are left out of ``n``.

    ``names`` says what self-claimed names match (the child's declared names, candidates' personas).
    """
    names = names or NameContext([], {})
    answered = [a for a in answers if a.text is not None]
    n = len(answered)
    label_counts: Counter[tuple[str, str, ClaimKind, bool]] = Counter()
    family_counts: Counter[str] = Counter()
    generic_family: dict[str, bool] = {}
    self_claims: list[SelfClaims] = []
    for a in answered:
        claims = table.extract(a.text or "")
        a.claims = [c.label for c in claims]
        own_words = extract_self_claims(a.text)
        a.self_names, a.self_makers = list(own_words.names), list(own_words.makers)
        self_claims.append(own_words)
        for c in claims:
            label_counts[(c.label, c.family, c.kind, c.generic)] += 1
        for fam in {c.family for c in claims}:
            family_counts[fam] += 1
        for c in claims:
            generic_family[c.family] = generic_family.get(c.family, False) or c.generic
    claims_out = [
        ClaimRate(label=lab, family=f, kind=k, generic=g, **_rate(cnt, n))
        for (lab, f, k, g), cnt in label_counts.items()
    ]
    claims_out.sort(key=lambda c: (-c.count, c.label))
    families = [
        FamilyRate(
            family=f,
            label=_label(table, f),
            generic=generic_family.get(f, False),
            own=f in own_families,
            learned=_learned(table, f),
            **_rate(cnt, n),
        )
        for f, cnt in family_counts.items()
    ]
    families.sort(key=lambda f: (-f.count, f.family))
    foreign = [f for f in families if not f.generic and not f.own and f.family != GENERIC_FAMILY]
    own_counts = sum(1 for a in answered if _claims_family(a, table, own_families))
    self_names = names.self_claim_rates(tally(self_claims, "name"), n, "name", table)
    self_makers = names.self_claim_rates(tally(self_claims, "maker"), n, "maker", table)
    persona = None
    if self_names or self_makers:
        persona = ClaimedPersona(
            name=self_names[0] if self_names else None, maker=self_makers[0] if self_makers else None
        )
    return ConditionResult(
        condition=condition,
        system_prompt=system_prompt,
        answered=n,
        failed=len(answers) - n,
        claims=claims_out,
        families=families,
        dominant_family=foreign[0].family if foreign else None,
        own=FamilyRate(family=SELF_FAMILY, own=True, **_rate(own_counts, n)) if own_families else None,
        self_names=self_names,
        self_makers=self_makers,
        self_named=Rate(**_rate(sum(1 for c in self_claims if c.names), n)),
        persona=persona,
        answers=answers,
    )


def _label(table: AliasTable, family: str) -> str:
    fam = table.families.get(family)
    if fam is None:
        return family
    return (fam.names or fam.orgs or [family])[0]  # a persona learned from its maker alone has no name


def _learned(table: AliasTable, family: str) -> bool:
    fam = table.families.get(family)
    return bool(fam and fam.learned)


def _claims_family(answer: AnswerRecord, table: AliasTable, families: set[str]) -> bool:
    return any(c.family in families for c in table.extract(answer.text or ""))


def dominant_family(texts: list[str], table: AliasTable) -> tuple[str | None, bool]:
    """The family most claimed in ``texts`` (non-generic preferred) and whether it is generic."""
    counts: Counter[str] = Counter()
    generic: dict[str, bool] = {}
    for t in texts:
        for c in table.extract(t):
            generic[c.family] = c.generic
        for fam in {c.family for c in table.extract(t)}:
            counts[fam] += 1
    ranked = sorted(counts, key=lambda f: (generic.get(f, False) or f == GENERIC_FAMILY, -counts[f], f))
    if not ranked or ranked[0] == GENERIC_FAMILY:
        return None, False
    return ranked[0], generic.get(ranked[0], False)


def is_verbatim(overlap: OverlapScore, baseline: OverlapScore) -> bool:
    return (
        overlap.containment >= VERBATIM_RATIO * baseline.containment
        and overlap.containment >= baseline.containment + VERBATIM_MARGIN
        and overlap.lcs_max >= VERBATIM_MIN_RUN
    )


def candidate_strength(claim: FamilyRate | None, generic: bool, own: bool, verbatim: bool) -> Strength:
    """See the module docs. ``own``: the candidate's family is the child's declared own name."""
    claimed = claim is not None and claim.ci[0] > CLAIM_MIN_LOWER and not own
    if claimed and not generic and verbatim:
        return "strong"
    if (claimed and not generic) or verbatim:
        return "moderate"
    if claim is not None and claim.count > 0 and not own:
        return "weak"
    return "none"


def evidence(
    ref: str,
    revision: str | None,
    child_without: ConditionResult,
    candidate_texts: list[str],
    baseline_texts: list[str],
    table: AliasTable,
    own_families: set[str],
    cached: bool,
    persona: LearnedPersona | None = None,
) -> CandidateEvidence:
    """Compare the child's no-system answers with one candidate's answers.

    The candidate's family is its ``persona``'s (listed, or learned from its answers); without a persona,
    the listed family its answers mention most.
    """
    from provbot.detectors.identity.overlap import overlap

    family: str | None
    if persona is not None and persona.family is not None:
        family = persona.family
        head = persona.name if persona.name is not None else persona.maker
        generic = bool(head is not None and head.generic)
    else:
        family, generic = dominant_family(candidate_texts, table)
    notes: list[str] = []
    claim = child_without.family(family) if family else None
    if family and claim is None:
        claim = FamilyRate(
            family=family,
            label=_label(table, family),
            generic=generic,
            own=family in own_families,
            learned=_learned(table, family),
            **_rate(0, child_without.answered),
        )
    if family is None:
        notes.append("the candidate gives no consistent name or maker for itself and names no known family")
    elif _learned(table, family):
        notes.append(
            f"the candidate's persona ({_label(table, family)}) is not in the alias list: learned from its answers"
        )
    child_texts = [a.text for a in child_without.answers if a.text]
    ov = overlap(child_texts, candidate_texts)
    base = overlap(baseline_texts, candidate_texts)
    ratio = ov.containment / max(base.containment, 0.01)
    verbatim = is_verbatim(ov, base)
    own = family in own_families if family else False
    if own:
        notes.append("the candidate's family is the child's own declared name: its claims are not counted")
    return CandidateEvidence(
        ref=ref,
        revision=revision,
        family=family,
        family_generic=generic,
        family_label=_label(table, family) if family else None,
        persona=persona,
        claim=claim,
        overlap=ov,
        baseline=base,
        ratio=ratio,
        verbatim=verbatim,
        strength=candidate_strength(claim, generic, own, verbatim),
        cached=cached,
        notes=notes,
    )
