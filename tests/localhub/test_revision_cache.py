"""The store's cache of revision listings: changes made through the API or on disk are still seen."""

from __future__ import annotations

import os
import time

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RevisionNotFoundError
from huggingface_hub.utils import get_session

from provbot.bot.localhub import LocalHub
from provbot.bot.localhub.store import RACY_NS, RepoStore


def sizes(api: HfApi, repo_id: str, revision: str | None = None) -> tuple[str, dict[str, int]]:
    info = api.model_info(repo_id, revision=revision, files_metadata=True)
    return info.sha, {s.rfilename: s.size for s in info.siblings}


def settle() -> None:
    """Wait out the racy window, so that the next walk is cached (what these tests are about)."""
    time.sleep(2 * RACY_NS / 1e9)


def test_update_repo_is_seen_at_once(localhub: LocalHub, hf_api: HfApi) -> None:
    sha = localhub.add_repo("acme/m", {"a.bin": b"x" * 10, "config.json": "{}"})
    settle()
    assert sizes(hf_api, "acme/m") == (sha, {"a.bin": 10, "config.json": 2})
    assert sizes(hf_api, "acme/m") == (sha, {"a.bin": 10, "config.json": 2})  # from the cache
    new_sha = localhub.update_repo("acme/m", {"a.bin": b"y" * 20})
    assert new_sha != sha
    assert sizes(hf_api, "acme/m") == (new_sha, {"a.bin": 20, "config.json": 2})
    assert sizes(hf_api, "acme/m", new_sha) == (new_sha, {"a.bin": 20, "config.json": 2})
    with pytest.raises(RevisionNotFoundError):
        hf_api.model_info("acme/m", revision=sha)  # older shas are not kept
    url = f"{localhub.url}/acme/m/resolve/{new_sha}/a.bin"
    r = get_session().get(url, headers={"Range": "bytes=0-4"})
    assert r.status_code == 206 and r.content == b"yyyyy" and r.headers["X-Repo-Commit"] == new_sha


def test_files_added_on_disk_are_seen_at_once(localhub: LocalHub, hf_api: HfApi) -> None:
    sha = localhub.add_repo("acme/m", {"a.bin": b"x" * 10})
    settle()
    assert sizes(hf_api, "acme/m") == (sha, {"a.bin": 10})
    (localhub.root / "acme" / "m" / "b.bin").write_bytes(b"z" * 3)  # a new name changes the folder's mtime
    new_sha, files = sizes(hf_api, "acme/m")
    assert new_sha != sha and files == {"a.bin": 10, "b.bin": 3}


def test_in_place_rewrite_on_disk_is_seen_after_the_ttl(localhub: LocalHub, hf_api: HfApi) -> None:
    sha = localhub.add_repo("acme/m", {"a.bin": b"x" * 10, "config.json": "{}"})
    settle()
    assert sizes(hf_api, "acme/m") == (sha, {"a.bin": 10, "config.json": 2})
    path = localhub.root / "acme" / "m" / "a.bin"
    inode = path.stat().st_ino
    path.write_bytes(b"w" * 30)  # same inode, folder mtime unchanged: only the TTL reveals it
    assert path.stat().st_ino == inode
    time.sleep(localhub.store.revision_ttl_s + 0.1)
    new_sha, files = sizes(hf_api, "acme/m")
    assert new_sha != sha and files == {"a.bin": 30, "config.json": 2}
    r = get_session().get(f"{localhub.url}/acme/m/resolve/main/a.bin", headers={"Range": "bytes=25-"})
    assert r.status_code == 206 and r.content == b"w" * 5 and r.headers["X-Repo-Commit"] == new_sha


def test_cache_rule(tmp_path) -> None:
    folder = tmp_path / "acme" / "m"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("1")
    old = time.time_ns() - 10 * RACY_NS
    os.utime(folder, ns=(old, old))
    store = RepoStore(tmp_path)
    assert store.resolve_cached("acme/m", None) is None  # nothing walked yet
    rev = store.resolve("acme/m", None)
    assert store.resolve_cached("acme/m", None) is rev
    assert store.resolve_cached("acme/m", rev.sha) is None  # a sha is mapped once a lookup walked for it
    assert store.resolve("acme/m", rev.sha) is rev and store.resolve_cached("acme/m", rev.sha) is rev
    store.invalidate("acme/m")
    assert store.resolve_cached("acme/m", None) is None
    assert store.resolve("acme/m", None).sha == rev.sha
    store.revision_ttl_s = 0.0
    store.invalidate()
    assert store.resolve("acme/m", None) is not store.resolve("acme/m", None)  # expired at once: walked again
