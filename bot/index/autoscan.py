"""``provbot scan CHILD`` without ``--parent``: candidates from the index, then the full scan.

>>> report, result = scan_with_index("someone/merged")          # doctest: +SKIP
>>> report.chosen, result.relation, [p.ref for p in result.parents]  # doctest: +SKIP
(['org/a', 'org/b', 'org/base'], 'merge', ['org/a', 'org/b'])
"""

from __future__ import annotations

from pydantic import SecretStr

from provbot.bot.index.candidates import CandidateReport, select_candidates
from provbot.bot.index.ingest import index_key
from provbot.bot.index.store import IndexStore
from provbot.detectors.weights.result import ScanResult


def scan_with_index(
    child: str,
    *,
    store: IndexStore | None = None,
    top: int | None = None,
    budget_mb: float | None = None,
    full: bool = False,
    endpoint: str | None = None,
    token: str | SecretStr | None = None,
    progress=None,
    record: bool = True,
    max_requests: int | None = None,
) -> tuple[CandidateReport, ScanResult]:
    """Select candidates for ``child`` and scan it against them.

    An inconclusive selection (family not indexed, quantized child) yields an ``inconclusive``
    ScanResult whose note says why, without scanning. With ``record``, the verdict is stored as the
    index's conclusion for the child when the child itself is indexed.
    """
    from provbot.bot.settings import get_settings
    from provbot.detectors.weights.scan import scan

    settings = get_settings()
    endpoint = endpoint or settings.hub_endpoint
    if token is None and settings.hub_token is not None:
        token = settings.hub_token
    plain_token = token.get_secret_value() if isinstance(token, SecretStr) else token
    store = store or IndexStore(settings.database_url)
    report = select_candidates(child, store=store, endpoint=endpoint, token=plain_token, top=top or settings.index.top)
    if report.inconclusive:
        return report, ScanResult(
            child=child, relation="inconclusive", notes=[f"candidate search: {report.inconclusive}"]
        )
    parents = [r for r in report.chosen if r != report.base]
    result = scan(
        child,
        parents,
        base=report.base,
        budget_mb=budget_mb,
        full=full,
        progress=progress,
        endpoint=endpoint,
        token=token,
        max_requests=max_requests,
        options=settings.scan,
    )
    result.notes.append(
        f"candidates chosen by the index ({report.match} family of {report.family_size}): {', '.join(report.chosen)}"
    )
    if record:
        store.record_conclusion(
            index_key(child),
            report.revision,
            {
                "relation": result.relation,
                "method": result.method,
                "parents": [p.ref for p in result.parents],
                "weights": {p.ref: p.weight for p in result.parents},
                "fit_r2": result.fit_r2,
                "base": result.base,
            },
        )
    return report, result
