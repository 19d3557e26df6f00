"""The index over real HTTP: the local Hub server, huggingface_hub listings, range reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from provbot.bot.index.candidates import select_candidates
from provbot.bot.index.crawl import crawl
from provbot.bot.index.ingest import add_models
from provbot.bot.index.store import IndexStore
from provbot.detectors.errors import RateLimitedError
from provbot.detectors.hub import RetryPolicy


@pytest.fixture
def hub(localhub, family_paths):
    for i, name in enumerate(("base", "a", "b", "c")):
        localhub.add_repo(f"acme/llama-{name}", family_paths[name], config={"downloads": 100 - i})
    return localhub


def test_hub_models_are_indexed_at_their_commit_and_updated_on_a_new_one(
    hub, sqlite_store: IndexStore, family_paths
) -> None:
    first = add_models(["acme/llama-a", "acme/nope", "acme/llama-b"], sqlite_store, endpoint=hub.url)
    assert [o.status for o in first] == ["added", "failed", "added"]
    assert first[0].revision == hub.sha("acme/llama-a")
    assert "not found" in first[1].message and "\n" not in first[1].message
    before = hub.request_count
    assert add_models(["acme/llama-a"], sqlite_store, endpoint=hub.url)[0].status == "unchanged"
    assert hub.request_count - before <= 2  # the commit lookup only: no header or weight reads
    new_sha = hub.update_repo("acme/llama-a", {"model.safetensors": Path(family_paths["c"]) / "model.safetensors"})
    again = add_models(["acme/llama-a"], sqlite_store, endpoint=hub.url)[0]
    assert again.status == "updated" and again.revision == new_sha == sqlite_store.get("acme/llama-a").revision


def test_candidates_for_a_hub_child(hub, sqlite_store: IndexStore, model_zoo) -> None:
    hub.add_repo("someone/merged", model_zoo.path("llama_linear"))
    add_models([f"acme/llama-{n}" for n in ("base", "a", "b", "c")], sqlite_store, endpoint=hub.url)
    report = select_candidates("someone/merged", store=sqlite_store, endpoint=hub.url)
    assert set(report.chosen[:2]) == {"acme/llama-a", "acme/llama-b"} and report.base == "acme/llama-base"
    assert report.revision == hub.sha("someone/merged")


def test_crawl_indexes_a_listing_and_resumes_after_an_interruption(hub, sqlite_store: IndexStore) -> None:
    seen: list[str] = []

    def stop_after_two(outcome) -> None:
        seen.append(outcome.ref)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10, progress=stop_after_two)
    assert sqlite_store.count() == 2
    report = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10)
    assert report.resumed == 1 and report.added == 2 and report.passes_complete == {"downloads": True}
    # Most downloaded first; the 2 handled before the interruption were the top two.
    assert seen == ["acme/llama-base", "acme/llama-a"]
    assert sqlite_store.count() == 4
    rec = sqlite_store.get("acme/llama-a")
    assert rec.revision == hub.sha("acme/llama-a")
    again = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads", "created_at"], limit=10)
    assert again.unchanged == 8 and again.added == 0


def test_crawl_follows_link_pages_and_respects_limit_and_size_filter(hub, sqlite_store: IndexStore) -> None:
    hub.options.page_size = 2  # the Hub pages listings; Link: rel="next" carries the cursor
    report = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10)
    assert report.listed == 4 and report.added == 4  # 4 items at 2 per page: the Link pages were followed
    limited = crawl(sqlite_store, endpoint=hub.url, sorts=["created_at"], limit=3)
    assert limited.listed == 3 and limited.unchanged == 3
    big_only = crawl(sqlite_store, endpoint=hub.url, sorts=["likes"], limit=10, num_parameters="min:1B")
    assert big_only.listed == 0


def test_crawl_waits_out_a_short_rate_limit(hub, sqlite_store: IndexStore) -> None:
    # A window within the deadline is waited out and the walk goes on, without failing.
    hub.rate_limit("/api/models", count=2, reset_s=1)
    waits: list[float] = []
    retry = RetryPolicy(sleep=waits.append)
    report = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10, retry=retry)
    assert len(waits) >= 2 and all(0 < w <= 1.0 for w in waits) and report.rate_limit_waits == 2
    assert report.added == 4 and report.failed == 0 and report.passes_complete == {"downloads": True}


def test_crawl_stops_at_a_far_rate_limit_and_resumes_later(hub, sqlite_store: IndexStore) -> None:
    hub.rate_limit("/acme/llama-b/resolve/", count=1, reset_s=3600)
    waits: list[float] = []
    with pytest.raises(RateLimitedError, match="rate limited until"):
        crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10, retry=RetryPolicy(sleep=waits.append))
    assert waits == []
    report = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10)
    assert report.resumed >= 1 and report.passes_complete == {"downloads": True}


def test_crawl_reads_no_model_info_per_model(hub, sqlite_store: IndexStore) -> None:
    hub.inject("/api/models/acme/", 500, count=100)  # a tripwire: any model_info call would hit it
    before = hub.request_count
    report = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10)
    assert report.added == 4 and hub.faults.pending() == 100
    assert hub.request_count - before == report.requests


def test_crawl_reports_hostile_repos_and_indexes_the_rest(hub, sqlite_store: IndexStore) -> None:
    import json
    import struct

    # The Hub itself cannot read a 1 TB header: the listing shows no safetensors, the crawl skips it.
    hub.add_repo(
        "evil/huge-header",
        {"config.json": "{}", "model.safetensors": struct.pack("<Q", 2**40) + b"{}"},
        config={"downloads": 1000},
    )
    # A header the listing parses but whose tensors overlap: our reader refuses it, one line.
    overlap = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
        }
    ).encode()
    hub.add_repo(
        "evil/overlap",
        {"config.json": "{}", "model.safetensors": struct.pack("<Q", len(overlap)) + overlap + bytes(24)},
        config={"downloads": 999},
    )
    report = crawl(sqlite_store, endpoint=hub.url, sorts=["downloads"], limit=10)
    assert report.added == 4 and report.failed == 1 and report.skipped == 1
    failure = report.failures[0]
    assert failure.ref == "evil/overlap" and "overlap" in failure.message and "\n" not in failure.message
    assert not failure.message.startswith("unexpected")
    assert sqlite_store.failures()[0].ref == "evil/overlap"
