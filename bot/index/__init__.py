"""The candidate-parent index: fingerprints, sketches, storage, ranking, crawl (docs/index.md).

>>> from provbot.bot.index import IndexStore, select_candidates   # doctest: +SKIP
"""

from __future__ import annotations

from provbot.bot.index.candidates import CandidateReport, select_candidates
from provbot.bot.index.store import IndexStore

__all__ = ["CandidateReport", "IndexStore", "select_candidates"]
