"""Crawl the Hub's listings (most downloaded, newest, ...) into the index.

Each listing is one ``list_models`` walk with ``expand`` (sha, config, safetensors, baseModels, tags,
cardData), so a model costs no extra API call: its commit and declared lineage come with the
listing, and only its safetensors headers and sketch bytes are read. A model already indexed at the
same commit costs nothing at all.

Resumable: each listing's pass records the ids it has handled; a crawl that stops (crash, Ctrl-C,
rate limit) resumes the same pass next time, and a finished pass lets the next run start afresh.
Rate-limit aware: a 429 waits for the window the Hub names, then the walk resumes.

>>> report = crawl(IndexStore("sqlite://"), endpoint="http://127.0.0.1:1", sorts=["downloads"], limit=5)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from provbot.bot.index.hubcalls import MAX_RATE_LIMITED, rate_limit_wait
from provbot.bot.index.ingest import AddOutcome, add_one, declared_from_info
from provbot.bot.index.store import IndexStore
from provbot.detectors.errors import ProvbotError, RemoteError

log = logging.getLogger(__name__)

EXPAND = ["sha", "safetensors", "config", "baseModels", "tags", "cardData", "createdAt", "lastModified"]
SORTS = ("downloads", "created_at", "last_modified", "likes", "trending_score")


class CrawlReport(BaseModel):
    listed: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    resumed: int = Field(0, description="Models skipped because an interrupted pass had handled them.")
    rate_limit_waits: int = 0
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
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[AddOutcome], None] | None = None,
) -> CrawlReport:
    """Walk each listing in ``sorts`` (top ``limit`` models) and index what is new or changed."""
    report = CrawlReport()
    for sort in sorts:
        if sort not in SORTS:
            raise ProvbotError(f"unknown listing sort {sort!r} (choose from {', '.join(SORTS)})")
        report.passes_complete[sort] = _crawl_listing(
            store,
            sort,
            endpoint=endpoint,
            token=token,
            limit=limit,
            num_parameters=num_parameters,
            name=name,
            sleep=sleep,
            progress=progress,
            report=report,
        )
    return report


def _crawl_listing(
    store: IndexStore, sort: str, *, endpoint, token, limit, num_parameters, name, sleep, progress, report: CrawlReport
) -> bool:
    key = f"{name}:{sort}:{limit}:{num_parameters or ''}"
    state = store.crawl_state(key)
    if state.get("complete", True):
        state = {"started": _now(), "complete": False, "handled": []}
    handled: set[str] = set(state.get("handled", []))
    resumed_from = set(handled)
    waits = 0
    while True:
        try:
            for info in _listing(sort, endpoint=endpoint, token=token, limit=limit, num_parameters=num_parameters):
                repo_id = getattr(info, "id", None)
                if not isinstance(repo_id, str) or repo_id in handled:
                    if repo_id in resumed_from:
                        report.resumed += 1
                        resumed_from.discard(repo_id)
                    continue
                report.listed += 1
                outcome = _index_listed(store, info, endpoint=endpoint, token=token)
                _count(report, outcome)
                if progress is not None:
                    progress(outcome)
                handled.add(repo_id)
                state["handled"] = sorted(handled)
                store.save_crawl_state(key, state)
            break
        except _RateLimited as limited:
            waits += 1
            report.rate_limit_waits += 1
            if waits > MAX_RATE_LIMITED:
                store.save_crawl_state(key, state)
                raise RemoteError(
                    f"listing {sort}: still rate limited after {MAX_RATE_LIMITED} waits; run the crawl again to resume"
                ) from None
            log.info("listing %s rate limited: waiting %.0f s", sort, limited.wait)
            sleep(limited.wait)
    state["complete"] = True
    state["finished"] = _now()
    store.save_crawl_state(key, state)
    return True


class _RateLimited(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limited ({wait:.0f} s)")
        self.wait = wait


def _listing(sort: str, *, endpoint, token, limit, num_parameters) -> Iterator[Any]:
    """``list_models`` pages as one iterator; a 429 surfaces as :class:`_RateLimited`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx

    api = HfApi(endpoint=endpoint, token=token or False)
    kwargs: dict[str, Any] = {"sort": sort, "limit": limit, "expand": EXPAND}
    if num_parameters:
        kwargs["num_parameters"] = num_parameters
    try:
        yield from api.list_models(**kwargs)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status == 429:
            raise _RateLimited(rate_limit_wait(exc.response)) from None
        raise RemoteError(f"listing {sort}: Hub error (HTTP {status})") from None
    except (httpx.HTTPError, OSError) as exc:
        raise RemoteError(f"listing {sort}: network error ({type(exc).__name__})") from None


def _index_listed(store: IndexStore, info: Any, *, endpoint, token) -> AddOutcome:
    repo_id = info.id
    if getattr(info, "safetensors", None) is None:
        return AddOutcome(ref=repo_id, status="failed", message=f"{repo_id}: no safetensors weights (skipped)")
    known = (getattr(info, "sha", None), declared_from_info(info))
    return add_one(repo_id, store, endpoint=endpoint, token=token, known=known)


def _count(report: CrawlReport, outcome: AddOutcome) -> None:
    if outcome.status == "failed" and outcome.message and outcome.message.endswith("(skipped)"):
        report.skipped += 1
        return
    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
    if outcome.status == "failed":
        report.failures.append(outcome)


def _now() -> str:
    return datetime.now(UTC).isoformat()
