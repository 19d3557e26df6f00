"""Resolve once per file: range reads go straight to the CDN URL the Hub redirected to (local Hub, real HTTP)."""

from __future__ import annotations

import pytest
import torch

from provbot.detectors.hub import HubClient
from provbot.detectors.weights.header_cache import HeaderCache
from provbot.detectors.weights.reader import canonical_models, read_sample
from provbot.detectors.weights.sampling import plan_sample
from provbot.detectors.weights.sources import HubSource, LocalSource
from tests.weights.builders import dense_state, write_model

BUDGET = 16 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("redir") / "m", dense_state(seed=5), prefix="model.", shards=2)


def _sample(hub_src: HubSource, model_dir) -> None:
    local = LocalSource(model_dir)
    plan = plan_sample(canonical_models([hub_src, local]), BUDGET)
    got, want = read_sample(hub_src, plan), read_sample(local, plan)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_one_resolve_per_file_then_cdn(localhub, model_dir):
    localhub.add_repo("acme/redir", model_dir)
    localhub.options.redirect_resolve = True
    client = HubClient(localhub.url)
    src = HubSource("acme/redir", client=client, concurrency=1)
    _sample(src, model_dir)
    files = src.files()
    stats = client.stats.snapshot()
    assert localhub.app.resolves == len(files) == stats["resolves"]  # one per shard, however many reads
    assert src.requests > 3 * len(files)  # many range reads ...
    assert (
        stats["cdn_requests"] + stats["redirects"] == localhub.app.cdn_reads
    )  # ... all but the first straight to the CDN
    assert stats["redirects"] == len(files)


def test_expired_cdn_url_is_resolved_again(localhub, model_dir):
    localhub.add_repo("acme/expiring", model_dir)
    localhub.options.redirect_resolve = True
    client = HubClient(localhub.url)
    src = HubSource("acme/expiring", client=client, concurrency=1)
    src.tensors()
    resolves = localhub.app.resolves
    localhub.app.revoke_cdn_urls()  # every signature given out is now refused with 403
    _sample(src, model_dir)
    assert client.stats.cdn_expired == len(src.files())
    assert localhub.app.resolves == resolves + len(src.files())  # once more per file, not per read


def test_short_lived_urls_are_not_used_past_their_expiry(localhub, model_dir):
    localhub.add_repo("acme/short", model_dir)
    localhub.options.redirect_resolve = True
    localhub.options.cdn_expiry_s = 30  # within the safety margin: never remembered
    client = HubClient(localhub.url)
    src = HubSource("acme/short", client=client, concurrency=1)
    _sample(src, model_dir)
    assert client.stats.cdn_requests == 0 and client.stats.cdn_expired == 0
    assert localhub.app.resolves == src.requests - 1  # every read resolved (model info aside)


def test_token_never_reaches_the_cdn_host(localhub, model_dir):
    localhub.add_repo("acme/private-ish", model_dir)
    localhub.add_token("hf_secret_token", "alice")
    localhub.options.redirect_resolve = True
    localhub.options.cdn_host = "localhost"  # another origin than 127.0.0.1
    client = HubClient(localhub.url, "hf_secret_token")
    src = HubSource("acme/private-ish", client=client, concurrency=2)
    _sample(src, model_dir)
    assert localhub.app.cdn_reads > len(src.files())
    assert localhub.app.cdn_with_token == 0
    assert client.stats.cdn_requests > 0


def test_concurrent_first_reads_of_a_file_resolve_it_once(localhub, model_dir):
    localhub.add_repo("acme/concurrent", model_dir)
    localhub.options.redirect_resolve = True
    headers = HeaderCache()
    HubSource("acme/concurrent", client=HubClient(localhub.url), header_cache=headers).tensors()
    client = HubClient(localhub.url)  # knows no CDN URL yet; the headers are cached: data reads come first
    src = HubSource("acme/concurrent", client=client, header_cache=headers, concurrency=8)
    _sample(src, model_dir)
    assert 0 < client.stats.resolves <= len(src.files()) < client.stats.cdn_requests


def test_a_file_served_without_redirect_is_read_as_before(localhub, model_dir):
    localhub.add_repo("acme/direct", model_dir)
    client = HubClient(localhub.url)
    src = HubSource("acme/direct", client=client, concurrency=8)
    _sample(src, model_dir)
    assert client.stats.cdn_requests == 0 and client.stats.resolves == src.requests - 1
