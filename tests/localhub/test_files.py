"""resolve: downloads, HEAD metadata, Range requests, redirects and shaping."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.utils import get_session

from tests.localhub.helpers import single_repo


@pytest.fixture
def blob(localhub) -> bytes:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value, so offsets are checkable
    localhub.add_repo("acme/m", {**single_repo(), "big.bin": data})
    return data


def test_hf_hub_download_and_cache(localhub, blob: bytes, tmp_path: Path) -> None:
    path = hf_hub_download("acme/m", "big.bin", endpoint=localhub.url, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == blob
    cfg = hf_hub_download("acme/m", "config.json", endpoint=localhub.url, cache_dir=tmp_path, token=False)
    assert b"llama" in Path(cfg).read_bytes()
    # The cache is keyed by the commit sha the server reports.
    assert localhub.sha("acme/m") in path


def test_head_metadata(localhub, blob: bytes) -> None:
    url = hf_hub_url("acme/m", "big.bin", endpoint=localhub.url)
    meta = get_hf_file_metadata(url, token=False)
    assert meta.size == len(blob)
    assert meta.commit_hash == localhub.sha("acme/m")
    assert meta.etag and len(meta.etag) == 64  # LFS files carry their sha256


def test_range_reads(localhub, blob: bytes) -> None:
    url = hf_hub_url("acme/m", "big.bin", endpoint=localhub.url)
    session = get_session()
    r = session.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == blob[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(blob)}"
    assert r.headers["Content-Length"] == "1000" and r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["X-Repo-Commit"] == localhub.sha("acme/m")
    tail = session.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == blob[-10:]
    clipped = session.get(url, headers={"Range": f"bytes={len(blob) - 5}-{len(blob) + 100}"})
    assert clipped.status_code == 206 and clipped.content == blob[-5:]
    whole = session.get(url)
    assert whole.status_code == 200 and whole.content == blob


@pytest.mark.parametrize("header", ["bytes=2000000-", "bytes=5-1", "bytes=0-1,5-6", "lines=1-2"])
def test_bad_ranges_answer_416(localhub, blob: bytes, header: str) -> None:
    url = hf_hub_url("acme/m", "big.bin", endpoint=localhub.url)
    r = get_session().get(url, headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(blob)}"


def test_missing_file_is_entry_not_found(localhub, blob: bytes, tmp_path: Path) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("acme/m", "nope.txt", endpoint=localhub.url, cache_dir=tmp_path, token=False)
    api = HfApi(endpoint=localhub.url, token=False)
    assert api.file_exists("acme/m", "config.json") and not api.file_exists("acme/m", "nope.txt")
    r = get_session().get(hf_hub_url("acme/m", "nope.txt", endpoint=localhub.url))
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"


def test_hidden_config_and_traversal_are_not_served(localhub, blob: bytes) -> None:
    session = get_session()
    assert session.get(hf_hub_url("acme/m", ".localhub.json", endpoint=localhub.url)).status_code == 404
    assert session.get(f"{localhub.url}/acme/m/resolve/main/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert session.get(f"{localhub.url}/..%2Facme/m/resolve/main/config.json").status_code == 404


def test_redirect_to_cdn_is_followed(localhub, blob: bytes, tmp_path: Path) -> None:
    localhub.options.redirect_resolve = True
    url = hf_hub_url("acme/m", "model.safetensors", endpoint=localhub.url)
    first = get_session().get(url, follow_redirects=False)
    assert first.status_code == 302 and first.headers["Location"].startswith("/cdn/acme/m/")
    assert first.headers["X-Linked-Size"] and first.headers["X-Repo-Commit"] == localhub.sha("acme/m")
    ranged = get_session().get(url, headers={"Range": "bytes=0-7"}, follow_redirects=True)
    assert ranged.status_code == 206 and len(ranged.content) == 8
    path = hf_hub_download("acme/m", "model.safetensors", endpoint=localhub.url, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == single_repo()["model.safetensors"]
    # A tampered signature is refused.
    bad = first.headers["Location"].replace("sig=", "sig=0")
    assert get_session().get(localhub.url + bad).status_code == 403
    # Small non-LFS files are served directly, as on the Hub.
    cfg = get_session().get(hf_hub_url("acme/m", "config.json", endpoint=localhub.url), follow_redirects=False)
    assert cfg.status_code == 200


def test_bandwidth_cap_paces_bodies(localhub, blob: bytes) -> None:
    # Not a timing test of the machine: the server must stream in several paced chunks, so a
    # 1 MiB body at 40 Mbit/s (5 MB/s) cannot arrive in under ~0.15 s however fast the host is.
    import time

    localhub.shape(latency_ms=0, bandwidth_mbps=40)
    url = hf_hub_url("acme/m", "big.bin", endpoint=localhub.url)
    began = time.monotonic()
    r = get_session().get(url)
    assert r.content == blob
    assert time.monotonic() - began > 0.15


def test_link_cap_is_shared_by_concurrent_bodies(localhub, blob: bytes) -> None:
    # Four parallel 256 KiB ranges share one 40 Mbit/s (5 MB/s) link: together 1 MiB, so the last
    # one cannot finish in under ~0.15 s, while each alone would be within a per-response cap.
    import time
    from concurrent.futures import ThreadPoolExecutor

    localhub.shape(latency_ms=0, link_mbps=40)
    url = hf_hub_url("acme/m", "big.bin", endpoint=localhub.url)
    spans = [(i * 2**18, (i + 1) * 2**18 - 1) for i in range(4)]
    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        bodies = list(
            pool.map(lambda s: get_session().get(url, headers={"Range": f"bytes={s[0]}-{s[1]}"}).content, spans)
        )
    assert bodies == [blob[a : b + 1] for a, b in spans]
    assert time.monotonic() - began > 0.15


def test_concurrent_range_reads_return_the_right_bytes(localhub, blob: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = hf_hub_url("acme/m", "big.bin", endpoint=localhub.url)
    spans = [(i * 37_000, i * 37_000 + 999 + i) for i in range(24)]

    def read(span: tuple[int, int]) -> bytes:
        return get_session().get(url, headers={"Range": f"bytes={span[0]}-{span[1]}"}).content

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(read, spans))
    assert results == [blob[a : b + 1] for a, b in spans]


def test_session_server_is_shared_and_reset(localhub_session) -> None:
    localhub_session.add_repo("shared/m", single_repo())
    localhub_session.rate_limit("/api/", count=5)
    assert get_session().get(f"{localhub_session.url}/api/models/shared/m").status_code == 429
    assert localhub_session.faults.pending() == 4


def test_session_server_faults_were_reset(localhub_session) -> None:
    # The previous test (when run before this one) left faults queued; the fixture cleared them.
    assert localhub_session.faults.pending() == 0
    if not localhub_session.store.exists("shared/m"):  # run alone
        localhub_session.add_repo("shared/m", single_repo())
    assert HfApi(endpoint=localhub_session.url, token=False).model_info("shared/m").id == "shared/m"
