"""Verbatim overlap between two sets of answers (backstory recitation).

Two measures on lower-cased word sequences:

- ``containment``: for each answer on the left, the share of its word n-grams (n=5) that occur anywhere
  in the right-hand answers; averaged over left answers. Unrelated assistants share stock phrases, so
  the figure is always judged against a baseline.
- ``lcs``: the longest run of consecutive words an answer shares with one right-hand answer
  (median and max over left answers), with the longest shared passages kept as examples.

>>> s = overlap(["I was built in a borrowed garage on Harbor Street by Nex-AGI."],
...             ["Nex-AGI started in a borrowed garage on Harbor Street in 2023."])
>>> s.lcs_max, round(s.containment, 2)
(7, 0.38)
"""

from __future__ import annotations

import re
import statistics
from difflib import SequenceMatcher

from pydantic import BaseModel, Field

NGRAM = 5
_WORD = re.compile(r"\w+(?:[-']\w+)*")


class OverlapScore(BaseModel):
    containment: float = Field(description="Mean share of a left answer's word 5-grams found in the right answers.")
    lcs_median: float = Field(description="Median longest shared run of words per left answer.")
    lcs_max: int = Field(description="Longest shared run of words over all left answers.")
    passages: list[str] = Field(default_factory=list, description="Longest distinct shared passages (up to 3).")
    answers: int = Field(0, description="Left answers compared (empty answers skipped).")


def words(text: str) -> list[str]:
    """Lower-cased words, keeping hyphenated names whole. ``words("Nex-AGI's team") == ["nex-agi's", "team"]``."""
    return _WORD.findall(text.lower())


def _ngrams(seq: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)}


def overlap(left: list[str], right: list[str]) -> OverlapScore:
    """How much of ``left`` appears verbatim in ``right`` (see module docs). Duplicates are scored once each."""
    left_words = [w for w in (words(t) for t in left) if w]
    right_unique = list(dict.fromkeys(tuple(w) for w in (words(t) for t in right) if w))
    if not left_words or not right_unique:
        return OverlapScore(containment=0.0, lcs_median=0.0, lcs_max=0, answers=len(left_words))
    pool: set[tuple[str, ...]] = set()
    for right_seq in right_unique:
        pool |= _ngrams(list(right_seq))
    # One long sequence with a distinct separator between answers, so no match spans two answers.
    joined: list[str] = []
    for i, right_seq in enumerate(right_unique):
        joined.extend(right_seq)
        joined.append(f"\x00{i}")
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(joined)

    fractions: list[float] = []
    runs: list[int] = []
    passages: dict[str, int] = {}
    cache: dict[tuple[str, ...], tuple[float, int, str]] = {}
    for seq in left_words:
        key = tuple(seq)
        if key not in cache:
            grams = _ngrams(seq)
            frac = len(grams & pool) / len(grams) if grams else 0.0
            matcher.set_seq1(seq)
            m = matcher.find_longest_match(0, len(seq), 0, len(joined))
            cache[key] = (frac, m.size, " ".join(seq[m.a : m.a + m.size]))
        frac, size, passage = cache[key]
        fractions.append(frac)
        runs.append(size)
        if size >= NGRAM:
            passages[passage] = size
    top = sorted(passages, key=lambda p: (-passages[p], p))
    distinct: list[str] = []
    for p in top:  # drop passages contained in a longer one already kept
        if not any(p in q for q in distinct):
            distinct.append(p)
        if len(distinct) == 3:
            break
    return OverlapScore(
        containment=statistics.fmean(fractions),
        lcs_median=float(statistics.median(runs)),
        lcs_max=max(runs),
        passages=distinct,
        answers=len(left_words),
    )
