"""Headers read once per process, and once per machine with a cache folder (local Hub, real HTTP)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from provbot.detectors.hub import HubClient
from provbot.detectors.weights.header_cache import CacheKey, HeaderCache
from provbot.detectors.weights.sources import HubSource
from tests.weights.builders import dense_state, write_model

# One process reads the model's headers and config through a cache folder; prints its request counts.
_CHILD = """
import json, sys
from provbot.detectors.hub import HubClient
from provbot.detectors.weights.header_cache import configure_header_cache
from provbot.detectors.weights.sources import HubSource
configure_header_cache(sys.argv[3])
client = HubClient(sys.argv[1])
src = HubSource(sys.argv[2], client=client)
n = len(src.tensors()); src.config()
print(json.dumps({"tensors": n, "requests": src.requests}))
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("hdrcache") / "m", dense_state(seed=7), prefix="model.", shards=3)


def _run(hub_url: str, repo: str, folder) -> dict:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, hub_url, repo, str(folder)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return {"stderr": out.stderr, **json.loads(out.stdout.strip().splitlines()[-1])}


def test_second_process_reads_headers_from_disk(localhub, model_dir, tmp_path):
    localhub.add_repo("acme/cached", model_dir)
    folder = tmp_path / "headers"
    first = _run(localhub.url, "acme/cached", folder)
    assert first["requests"] == 1 + 3 + 1  # model info, three shard headers, config
    second = _run(localhub.url, "acme/cached", folder)
    assert second["tensors"] == first["tensors"]
    assert second["requests"] == 1  # model info only: headers and config came from the folder
    entries = list(folder.rglob("*.hdr"))
    assert len(entries) == 4 and all(localhub.sha("acme/cached") in str(p) for p in entries)

    entries[0].write_bytes(entries[0].read_bytes()[:-3] + b"xyz")  # one entry corrupted
    third = _run(localhub.url, "acme/cached", folder)
    assert "ignoring" in third["stderr"] and "checksum" in third["stderr"]
    assert third["requests"] == 2 and third["tensors"] == first["tensors"]  # that one file read again
    # ... and rewritten whole; the entries that were served from the folder were not written again.
    others = entries[1:]
    stamps = {p: p.stat().st_mtime_ns for p in others}
    fourth = _run(localhub.url, "acme/cached", folder)
    assert fourth["requests"] == 1 and "ignoring" not in fourth["stderr"]
    assert {p: p.stat().st_mtime_ns for p in others} == stamps


def test_headers_shared_between_sources_of_one_process(localhub, model_dir):
    localhub.add_repo("acme/shared", model_dir)
    cache = HeaderCache()  # memory only: nothing written
    client = HubClient(localhub.url)
    a = HubSource("acme/shared", client=client, header_cache=cache)
    a.tensors()
    a.config()
    b = HubSource("acme/shared", client=client, header_cache=cache)
    assert b.tensors().keys() == a.tensors().keys() and b.config() == a.config()
    assert b.requests == 1  # its model info only


def test_branch_names_are_not_cached(tmp_path):
    cache = HeaderCache(tmp_path)
    key = CacheKey("http://hub", "org/m", "main", "model.safetensors")
    cache.put(key, b"\x02\x00\x00\x00\x00\x00\x00\x00{}", 10)
    assert cache.get(key) is None and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda raw: b"XXXX" + raw[4:], "not a header cache entry"),
        (lambda raw: raw[:10], "truncated"),
        (lambda raw: raw[:4] + b"\x09" + raw[5:], "version 9"),
    ],
)
def test_bad_entries_are_ignored_with_a_warning(tmp_path, caplog, damage, why):
    key = CacheKey("http://hub", "org/m", "a" * 40, "model.safetensors")
    HeaderCache(tmp_path).put(key, b"\x02\x00\x00\x00\x00\x00\x00\x00{}", 10)
    path = HeaderCache(tmp_path).path(key)
    assert path is not None
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert HeaderCache(tmp_path).get(key) is None
    assert why in caplog.text


def test_an_entry_for_another_file_is_refused(tmp_path):
    a = CacheKey("http://hub", "org/m", "a" * 40, "one.safetensors")
    b = CacheKey("http://hub", "org/m", "a" * 40, "two.safetensors")
    cache = HeaderCache(tmp_path)
    cache.put(a, b"data", 4)
    path_a, path_b = cache.path(a), cache.path(b)
    assert path_a is not None and path_b is not None
    path_b.write_bytes(path_a.read_bytes())  # copied over another key's file
    assert HeaderCache(tmp_path).get(b) is None
