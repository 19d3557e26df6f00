"""Choose the candidate parents of a child from the index: what ``provbot scan CHILD`` runs when no
``--parent`` is given.

1. Fingerprint and sketch the child (headers plus a few hundred KB).
2. Select its family: the exact-shape family, else the loose one (other depth, larger vocabulary),
   else ``inconclusive`` with the reason; never a guess.
3. Pick the family's base (a known or declared base, else the model nearest the family median),
   shortlist by delta correlation on screening vectors, then rank the shortlist by non-negative
   regression of the child's delta on theirs (:mod:`provbot.bot.index.ranking`).
4. Report every candidate considered, with its weight, its share of the explained delta and why.

>>> report = select_candidates("./child-model", store=IndexStore("sqlite:///var/provbot.db"))  # doctest: +SKIP
>>> report.chosen, report.base                                                                   # doctest: +SKIP
(['org/parent-a', 'org/parent-b'], 'org/base')
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from provbot.bot.index.fingerprint import Fingerprint
from provbot.bot.index.ingest import Indexed, index_key, read_model
from provbot.bot.index.ranking import fit_deltas, pick_base, shortlist
from provbot.bot.index.sketch import Sketch
from provbot.bot.index.store import IndexStore, Member
from provbot.detectors.hub import HubClient

#: A candidate is chosen when it explains at least this share of the child's delta from the base.
#: Sibling fine-tunes of one base correlate a little (same optimiser, similar data: shares of a few
#: percent in the tiny test models), true merge parents explain tens of percent.
MIN_SHARE = 0.10
#: Below this delta R^2 nobody explains the child: only the base goes to the scan.
MIN_R2 = 0.15
#: Largest loose family compared (they are aligned one by one).
MAX_LOOSE = 256
#: A child whose delta from the base is below this fraction of its norm is a copy of the base.
COPY_TOL = 1e-6


class Candidate(BaseModel):
    ref: str
    role: Literal["base", "candidate"]
    share: float = Field(description="Share of the child's delta from the base this model explains (0-1).")
    weight: float = Field(description="Fitted non-negative weight (for the base: 1 - sum of the others).")
    correlation: float | None = Field(None, description="Cosine of its delta with the child's delta (screening).")
    revision: str | None = None
    reason: str


class CandidateReport(BaseModel):
    """Which models could be the child's parents, and why (``provbot scan`` prints it in --json)."""

    child: str
    revision: str | None = None
    family_key: str
    loose_key: str
    match: Literal["exact", "loose", "none"]
    family_size: int = Field(0, description="Indexed models of the matched family (the child excluded).")
    base: str | None = None
    chosen: list[str] = Field(default_factory=list, description="Refs to pass to the scan as parents (base last).")
    considered: list[Candidate] = Field(default_factory=list)
    fit_r2: float | None = Field(None, description="Delta R^2 of the sketch regression on the chosen candidates.")
    inconclusive: str | None = Field(None, description="Why no candidate can be named (then chosen is empty).")
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0


def select_candidates(
    child_ref: str,
    *,
    store: IndexStore | None = None,
    database_url: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    top: int = 3,
    child: Indexed | None = None,
    client: HubClient | None = None,
) -> CandidateReport:
    """Select the candidate parents of ``child_ref`` (local folder or ``org/name[@rev]``); a Hub child is
    read through ``client`` when given."""
    t0 = time.perf_counter()
    if store is None:
        from provbot.bot.settings import get_settings

        store = IndexStore(database_url or get_settings().database_url)
    unindexed: list[str] = []

    def want_sketch(fp: Fingerprint) -> bool:
        # Cheap check first: config and headers say the family; an unindexed one needs no sketch.
        why = _unindexed(fp, store, {child_ref, index_key(child_ref)})
        if why is not None:
            unindexed.append(why)
        return why is None

    child = child or read_model(child_ref, endpoint=endpoint, token=token, client=client, want_sketch=want_sketch)
    if unindexed:
        fp = child.fingerprint
        report = CandidateReport(
            child=child.ref,
            revision=child.revision,
            family_key=fp.family_key,
            loose_key=fp.loose_key,
            match="none",
            inconclusive=unindexed[0],
        )
    else:
        report = _select(child, store, top)
    report.seconds = round(time.perf_counter() - t0, 4)
    return report


def _unindexed(fp: Fingerprint, store: IndexStore, own: set[str]) -> str | None:
    """Why no indexed model can be the child's relative (no exact or loose family member), or None."""
    if any(m.ref not in own for m in store.members(fp.family_key)):
        return None
    if any(r.ref not in own for r in store.loose_family(fp.loose_key)):
        return None
    return _not_indexed(fp)


def _select(child: Indexed, store: IndexStore, top: int) -> CandidateReport:
    fp = child.fingerprint
    report = CandidateReport(
        child=child.ref, revision=child.revision, family_key=fp.family_key, loose_key=fp.loose_key, match="none"
    )
    if child.sketch is None:
        report.inconclusive = "the child's weights are integer-quantized: no float sketch to compare"
        return report
    own = {child.ref, index_key(child.ref)}
    members, screens = store.screens(fp.family_key)
    keep = [i for i, m in enumerate(members) if m.ref not in own]
    if len(keep) < len(members):  # copying the matrix costs milliseconds: only when the child is in it
        members, screens = [members[i] for i in keep], screens[keep]
    if members:
        report.match, report.family_size = "exact", len(members)
        child_screen = child.sketch.screen()
        if screens.shape[1] != len(child_screen):
            report.inconclusive = (
                f"family {fp.family_key[:12]} has {len(members)} indexed models but none with a comparable sketch"
            )
            return report
        return _rank(report, child, child.sketch, members, screens, child_screen, store.sketches, top)
    unsketched = [m for m in store.members(fp.family_key) if m.ref not in own]
    if unsketched:
        report.match, report.family_size = "exact", len(unsketched)
        report.inconclusive = (
            f"family {fp.family_key[:12]} has {len(unsketched)} indexed models but none with a "
            f"sketch to compare (quantized, or indexed by an older provbot: re-add them)"
        )
        return report

    loose = [r for r in store.loose_family(fp.loose_key) if r.ref not in own][:MAX_LOOSE]
    if not loose:
        report.inconclusive = _not_indexed(fp)
        return report
    report.match, report.family_size = "loose", len(loose)
    sketches = store.sketches([r.ref for r in loose])
    aligned = _align_loose(child.sketch, sketches)
    if aligned is None:
        report.inconclusive = (
            f"only partial-shape relatives are indexed ({len(loose)}), and they share too few "
            f"sketched tensors with the child to compare"
        )
        return report
    child_vec, refs, rows = aligned
    report.notes.append(
        f"no exact-shape relative indexed; compared {len(refs)} partial-shape relatives "
        f"(other depth or vocabulary) on {len(child_vec)} shared sketch values"
    )
    by_ref = {r.ref: Member(ref=r.ref, is_base=r.is_base, revision=r.revision) for r in loose}
    full = {ref: row for ref, row in zip(refs, rows)}
    return _rank(
        report, child, None, [by_ref[r] for r in refs], rows, child_vec, lambda wanted: full, top, vectors=True
    )


def _rank(
    report: CandidateReport,
    child: Indexed,
    child_sketch: Sketch | None,
    members: list[Member],
    screens: np.ndarray,
    child_screen: np.ndarray,
    load,
    top: int,
    vectors: bool = False,
) -> CandidateReport:
    refs = [m.ref for m in members]
    by_ref = {m.ref: m for m in members}
    declared = set(child.declared.base_models)
    base_rows = [i for i, r in enumerate(refs) if by_ref[r].is_base or r in declared]
    b = pick_base(child_screen, screens, base_rows)
    base_ref = refs[b]
    short = shortlist(child_screen, screens, b)
    wanted = [refs[i] for i, _ in short] + [base_ref]
    loaded = load(wanted)

    def values(ref: str) -> np.ndarray | None:
        item = loaded.get(ref)
        if item is None:
            return None
        if vectors:
            return item
        if item.layout_key != child_sketch.layout_key:
            return None
        return item.values

    base_vec = values(base_ref)
    if base_vec is None:
        report.inconclusive = f"the sketch of the family base {base_ref} could not be loaded"
        return report
    child_vec = child_screen if vectors else child_sketch.values
    names, rows, corrs = [], [], []
    for i, corr in short:
        vec = values(refs[i])
        if vec is not None:
            names.append(refs[i])
            rows.append(vec)
            corrs.append(corr)
    fit = fit_deltas(child_vec, np.stack(rows) if rows else np.zeros((0, len(child_vec))), base_vec)
    report.base, report.fit_r2 = base_ref, round(fit.r2, 6)
    base_reason = (
        "known base of the family"
        if by_ref[base_ref].is_base
        else "declared base_model of the child"
        if base_ref in set(child.declared.base_models)
        else "nearest model to the family median (no known base indexed)"
    )

    if fit.delta_norm < COPY_TOL:
        report.considered.append(
            Candidate(
                ref=base_ref,
                role="base",
                share=1.0,
                weight=1.0,
                revision=by_ref[base_ref].revision,
                reason=f"{base_reason}; the child's sketch equals it",
            )
        )
        report.chosen = [base_ref]
        report.notes.append(f"the child's sampled weights are identical to {base_ref}: a copy of it")
        return report

    ranked = sorted(zip(names, fit.weights, fit.shares, corrs), key=lambda t: -t[2])
    chosen = [n for n, _w, share, _c in ranked if share >= MIN_SHARE][: max(top - 1, 1)]
    base_weight = 1.0 - sum(fit.weights)
    for name, w, share, corr in ranked:
        why = (
            f"explains {share:.0%} of the child's delta from {base_ref} with weight {w:.3f}"
            if share >= MIN_SHARE
            else f"delta correlation {corr:.3f} but no weight in the joint fit"
        )
        report.considered.append(
            Candidate(
                ref=name,
                role="candidate",
                share=round(share, 6),
                weight=round(w, 6),
                correlation=round(corr, 6),
                revision=by_ref[name].revision,
                reason=why,
            )
        )
    report.considered.insert(
        0,
        Candidate(
            ref=base_ref,
            role="base",
            share=0.0,
            weight=round(base_weight, 6),
            revision=by_ref[base_ref].revision,
            reason=f"{base_reason}; implied weight {base_weight:.3f}",
        ),
    )
    if fit.r2 < MIN_R2 or not chosen:
        report.notes.append(
            f"no indexed model explains the child's delta from {base_ref} (R^2 {fit.r2:.3f}): "
            f"only the base goes to the scan (an independent fine-tune, or its parents are not indexed)"
        )
        chosen = []
    report.chosen = chosen + [base_ref]
    missing = sorted(set(child.declared.base_models) - set(by_ref))
    if missing:
        report.notes.append(f"declared base_model not in this family's index: {', '.join(missing)}")
    return report


def _align_loose(child: Sketch, sketches: dict[str, Sketch]) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """Child and relatives restricted to the sketch entries all of them share (same name, shape, count)."""
    if not sketches:
        return None
    shared = {(e.name, e.shape, e.n) for e in child.entries}
    for s in sketches.values():
        shared &= {(e.name, e.shape, e.n) for e in s.entries if s.positions == child.positions}
    names = sorted(n for n, _s, _k in shared)
    if not names or sum(k for _n, _s, k in shared) < 0.1 * len(child.values):
        return None

    def take(s: Sketch) -> np.ndarray:
        return np.concatenate([s.values[slice(*s.offsets[n])] for n in names])

    refs = sorted(sketches)
    return take(child), refs, np.stack([take(sketches[r]) for r in refs])


def _not_indexed(fp: Fingerprint) -> str:
    return f"family not indexed: no indexed model has this architecture ({_describe(fp)}; family {fp.family_key[:12]})"


def _describe(fp) -> str:
    arch = fp.arch
    parts = [str(arch.get("model_type", "unknown type"))]
    if fp.hidden:
        parts.append(f"hidden {fp.hidden}")
    parts.append(f"{fp.layers} layers")
    if fp.vocab:
        parts.append(f"vocab {fp.vocab}")
    return ", ".join(parts)
