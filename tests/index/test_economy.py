"""What indexing and candidate search cost in requests (local Hub with CDN redirects, real HTTP)."""

from __future__ import annotations

import numpy as np
import pytest

from provbot.bot.index.candidates import select_candidates
from provbot.bot.index.ingest import add_models
from provbot.bot.index.sketch import read_sketch
from provbot.bot.index.store import IndexStore
from provbot.detectors.hub import HubClient
from provbot.detectors.weights.header_cache import HeaderCache
from provbot.detectors.weights.sources import HubSource, LocalSource


@pytest.fixture
def hub(localhub, family_paths):
    localhub.options.redirect_resolve = True
    for name in ("base", "a", "unrelated"):
        localhub.add_repo(f"acme/llama-{name}", family_paths[name])
    return localhub


def test_sketch_keeps_its_values_under_a_request_ceiling(hub, family_paths) -> None:
    want = read_sketch(LocalSource(family_paths["a"]), max_requests=None)
    src = HubSource("acme/llama-a", client=HubClient(hub.url), header_cache=HeaderCache())
    src.tensors()
    before = src.requests
    got = read_sketch(src, max_requests=8)
    assert src.requests - before <= 8 < len(want.entries)  # far fewer requests than sketched tensors
    assert got.entries == want.entries and np.array_equal(got.values, want.values)


def test_index_add_makes_a_bounded_number_of_requests(hub, sqlite_store: IndexStore) -> None:
    client = HubClient(hub.url)
    before = hub.request_count
    [outcome] = add_models(["acme/llama-base"], sqlite_store, client=client)
    assert outcome.status == "added"
    shards = len(HubSource("acme/llama-base", client=client).files())
    # model info, one resolve per file (headers and config, then the sketch straight from the CDN),
    # and the sketch's reads under its ceiling.
    assert hub.app.resolves <= shards + 1
    assert hub.request_count - before <= 1 + shards + 1 + 256 + shards


def test_an_unindexed_family_is_answered_before_any_sketch_read(hub, sqlite_store: IndexStore, family_paths) -> None:
    hub.add_repo("someone/child", family_paths["a"])
    cdn_before = hub.app.cdn_reads
    client = HubClient(hub.url)
    report = select_candidates("someone/child", store=sqlite_store, client=client)
    assert report.inconclusive is not None and report.inconclusive.startswith("family not indexed")
    shards = len(HubSource("someone/child", client=client).files())
    # model info, the shard headers, config.json: not one weight byte
    assert client.stats.requests <= 1 + shards + 1 + 1
    assert hub.app.cdn_reads - cdn_before == len(HubSource("someone/child", client=client).files())  # headers only


def test_a_sketch_that_cannot_fit_by_bridging_keeps_a_power_of_two_stride_of_layers(family_paths) -> None:
    from provbot.detectors.weights.keys import classify

    src = LocalSource(family_paths["a"])
    whole = read_sketch(src, max_requests=None)
    thin = read_sketch(src, max_requests=12, max_gap_bytes=0)  # no bridging allowed: only thinning helps
    layers = sorted({classify(e.name).layer for e in whole.entries} - {None})
    kept = sorted({classify(e.name).layer for e in thin.entries} - {None})
    assert kept and len(kept) < len(layers)
    stride = kept[1] - kept[0] if len(kept) > 1 else len(layers)
    assert stride & (stride - 1) == 0 and kept == layers[::stride]
    # Entries outside layers stay; kept entries hold the same values as in the whole sketch.
    assert {e.name for e in whole.entries if classify(e.name).layer is None} <= {e.name for e in thin.entries}
    mine, theirs = thin.common(whole)
    assert len(mine) == len(thin.values) and np.array_equal(thin.values[mine], whole.values[theirs])
