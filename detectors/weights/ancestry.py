"""Which candidate is the others' base: the reference that the delta fit and the descent tests need.

Whether a child descends from candidate X or is X's sibling can only be told relative to X's own
base (see descent.py). The base comes, in order, from:

1. ``given``: the caller's ``--base``;
2. ``declared``: a candidate's model card names another candidate as its ``base_model``, and the
   weights agree that the two are related (a card is the uploader's word, so it only orients a pair
   the weights already tie together; the child's own card is never used: it is the model on trial);
3. ``inferred``: with three or more candidates, the one the others are closest to.

Without any of these the scan takes the candidate closest to the child as its reference
(``closest``), which says nothing about ancestry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from provbot.detectors.declared import Declared
from provbot.detectors.weights.fit import Lineage
from provbot.detectors.weights.result import BaseSource

#: Median Pearson r of two candidates' 2-D tensors above which a declared base is believed
#: (fine-tunes of one base: 0.8-0.99; independent initialisations: ~0).
DECLARED_MIN_R = 0.3


@dataclass(frozen=True)
class BaseChoice:
    index: int | None
    source: BaseSource | None
    note: str | None = None


def candidate_pearson(lin: Lineage, i: int, j: int) -> float:
    """Median over 2-D tensors of the Pearson r between candidates ``i`` and ``j``."""
    st = lin.stats.take(lin.matrix_idx())
    if len(st) == 0:
        return 0.0
    n = st.n.astype(float)
    a, b = 1 + i, 1 + j
    mean_a, mean_b = st.sums[:, a] / n, st.sums[:, b] / n
    cov = st.gram[:, a, b] / n - mean_a * mean_b
    var_a = np.maximum(st.gram[:, a, a] / n - mean_a**2, 1e-300)
    var_b = np.maximum(st.gram[:, b, b] / n - mean_b**2, 1e-300)
    return float(np.median(cov / np.sqrt(var_a * var_b)))


def inferred_base(lin: Lineage) -> int | None:
    """The candidate the other candidates are closest to (needs >= 3 candidates to mean anything)."""
    if lin.k < 3:
        return None
    g = lin.stats.gram[lin.matrix_idx()][:, 1:, 1:]
    diag = np.diagonal(g, axis1=1, axis2=2)
    d2 = diag[:, :, None] + diag[:, None, :] - 2 * g
    cost = np.sqrt(np.maximum(d2, 0.0)).sum(axis=2) / np.sqrt(np.maximum(diag.mean(axis=1), 1e-300))[:, None]
    return int(np.argmin(cost.sum(axis=0)))


def ref_keys(ref: str, folder: Path | None = None) -> set[str]:
    """Ways a card may name ``ref``: the Hub id without revision (any case), or a local folder."""
    keys = {ref.lower(), ref.partition("@")[0].lower()}
    for path in (Path(ref).expanduser(), *([folder / ref] if folder else [])):
        try:
            if path.is_dir():
                keys.add(str(path.resolve()))
        except (OSError, ValueError):
            continue
    return keys


def declared_base(lin: Lineage, refs: Sequence[str], declared: Sequence[Declared | None]) -> BaseChoice:
    """The candidate other candidates' cards name as their base_model, when the weights agree."""
    keys = [ref_keys(r) for r in refs]
    votes: dict[int, list[int]] = {}
    for i, d in enumerate(declared):
        if d is None:
            continue
        folder = Path(refs[i]).expanduser().parent if Path(refs[i]).expanduser().is_dir() else None
        for name in d.base_models:
            named = ref_keys(name, folder)
            for j, k in enumerate(keys):
                if j != i and named & k and candidate_pearson(lin, i, j) >= DECLARED_MIN_R:
                    votes.setdefault(j, []).append(i)
    if not votes:
        return BaseChoice(None, None)
    ranked = sorted(votes, key=lambda j: -len(votes[j]))
    if len(ranked) > 1 and len(votes[ranked[0]]) == len(votes[ranked[1]]):
        return BaseChoice(None, None, "candidates' cards name different bases among the candidates: none is used")
    j = ranked[0]
    names = ", ".join(refs[i] for i in votes[j])
    return BaseChoice(
        j,
        "declared",
        f"{refs[j]} is the base of {names} by {'their cards' if len(votes[j]) > 1 else 'its card'}, "
        "and the weights agree that they are related",
    )


def choose_base(
    lin: Lineage, refs: Sequence[str], given: int | None, declared: Sequence[Declared | None] | None = None
) -> BaseChoice:
    """The candidates' base: given, else declared by a candidate's card, else inferred (see module)."""
    if given is not None:
        return BaseChoice(given, "given")
    choice = declared_base(lin, refs, declared or [None] * len(refs))
    if choice.index is not None:
        return choice
    inferred = inferred_base(lin)
    if inferred is not None:
        return BaseChoice(inferred, "inferred", choice.note)
    return choice
