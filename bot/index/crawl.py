"""Crawl the Hub's listings (most downloaded, newest, ...) into the index.

Each listing is one ``list_models`` walk with ``expand`` (sha, config, safetensors, baseModels, tags,
cardData), so a model costs no extra API call: its commit and declared lineage come with the
listing, and only its safetensors headers and sketch bytes are read. A model already indexed at the
same commit costs nothing at all.

Resumable: each listing's pass records the ids it has handled; a crawl that stops (crash, Ctrl-C,
rate limit) resumes the same pass next time, and a finished pass lets the next run start afresh.
Rate limits are the Hub client's: a short window is waited out, a long one stops the crawl with
"rate limited until HH:MM" (run it again after that: it resumes).

>>> report = crawl(IndexStore("sqlite://"), endpoint="http://127.0.0.1:1", sorts=["downloads"], limit=5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from provbot.bot.index.ingest import AddOutcome, add_one
from provbot.bot.index.store import IndexStore
from provbot.detectors.errors import ProvbotError
from provbot.detectors.hub import HubClient, ModelInfo, RetryPolicy

log = logging.getLogger(__name__)

#: Everything indexing needs comes with the listing (siblings too): a model costs no model_info call.
EXPAND = [
    "sha",
    "siblings",
    "safetensors",
    "gguf",
    "config",
    "baseModels",
    "tags",
    "cardData",
    "createdAt",
    "lastModified",
]
SORTS = ("downloads", "created_at", "last_modified", "likes", "trending_score")


class CrawlReport(BaseModel):
    listed: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    resumed: int = Field(0, description="Models skipped because an interrupted pass had handled them.")
    rate_limit_waits: int = Field(0, description="Rate-limit windows waited out.")
    requests: int = Field(0, description="Hub requests made (API and file reads).")
    failures: list[AddOutcome] = Field(default_factory=list)
    passes_complete: dict[str, bool] = Field(default_factory=dict)


def crawl(
    store: IndexStore,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    sorts: list[str] | tuple[str, ...] = ("downloads", "created_at"),
    limit: int = 100,
    num_parameters: str | None = None,
    name: str = "default",
    retry: RetryPolicy | None = None,
    progress: Callable[[AddOutcome], None] | None = None,
) -> CrawlReport:
    """Walk each listing in ``sorts`` (top ``limit`` models) and index what is new or changed."""
    report = CrawlReport()
    client = HubClient(endpoint, token, retry=retry)
    for sort in sorts:
        if sort not in SORTS:
            raise ProvbotError(f"unknown listing sort {sort!r} (choose from {', '.join(SORTS)})")
        report.passes_complete[sort] = _crawl_listing(
            store,
            sort,
            client=client,
            limit=limit,
            num_parameters=num_parameters,
            name=name,
            progress=progress,
            report=report,
        )
    stats = client.stats.snapshot()
    report.requests, report.rate_limit_waits = stats["requests"], stats["rate_limited"]
    return report


def _crawl_listing(
    store: IndexStore,
    sort: str,
    *,
    client: HubClient,
    limit: int,
    num_parameters: str | None,
    name: str,
    progress: Callable[[AddOutcome], None] | None,
    report: CrawlReport,
) -> bool:
    key = f"{name}:{sort}:{limit}:{num_parameters or ''}"
    state = store.crawl_state(key)
    if state.get("complete", True):
        state = {"started": _now(), "complete": False, "handled": []}
    handled: set[str] = set(state.get("handled", []))
    resumed_from = set(handled)
    try:
        for info in client.list_models(sort=sort, expand=EXPAND, limit=limit, num_parameters=num_parameters):
            if info.id in handled:
                if info.id in resumed_from:
                    report.resumed += 1
                    resumed_from.discard(info.id)
                continue
            report.listed += 1
            outcome = _index_listed(store, info, client)
            _count(report, outcome)
            if progress is not None:
                progress(outcome)
            handled.add(info.id)
            state["handled"] = sorted(handled)
            store.save_crawl_state(key, state)
    except ProvbotError:
        store.save_crawl_state(key, state)  # the next run resumes here
        raise
    state["complete"] = True
    state["finished"] = _now()
    store.save_crawl_state(key, state)
    return True


def _index_listed(store: IndexStore, info: ModelInfo, client: HubClient) -> AddOutcome:
    if info.safetensors is None and info.gguf is None:
        return AddOutcome(ref=info.id, status="failed", message=f"{info.id}: no safetensors or GGUF weights (skipped)")
    return add_one(info.id, store, client=client, info=info)


def _count(report: CrawlReport, outcome: AddOutcome) -> None:
    if outcome.status == "failed" and outcome.message and outcome.message.endswith("(skipped)"):
        report.skipped += 1
        return
    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
    if outcome.status == "failed":
        report.failures.append(outcome)


def _now() -> str:
    return datetime.now(UTC).isoformat()
