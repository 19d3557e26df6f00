"""Typed reads through the client: model info, listings, ranged reads, downloads, snapshots."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from provbot.detectors.errors import BadAnswerError, NotFoundError
from tests.bot.helpers import model_files
from tests.hub.conftest import FakeClock, make_client
from tests.hub.scripted import Answer, ScriptedServer


def test_model_info_is_typed(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    localhub.add_repo("lab/x", model_files(base_model=["lab/base"]))
    info = make_client(localhub.url, clock).model_info("lab/x")
    assert info.id == "lab/x" and len(info.sha or "") == 40
    assert isinstance(info.created_at, datetime) and isinstance(info.last_modified, datetime)
    assert {"model.safetensors", "config.json", "README.md"} <= info.filenames
    assert info.parameter_total == 4096 and info.declared.base_models == ["lab/base"]
    pinned = make_client(localhub.url, clock).model_info("lab/x", info.sha, expand=["sha", "siblings"])
    assert pinned.sha == info.sha and pinned.card_data is None


def _entry(i: int) -> dict[str, object]:
    return {"id": f"org/m{i}", "sha": f"{i:040x}", "createdAt": "2026-01-01T00:00:00Z"}


def test_listing_pages_are_lazy_and_an_invalid_entry_is_skipped(scripted: ScriptedServer, clock: FakeClock) -> None:
    page2 = f"{scripted.url}/api/models?cursor=2"
    scripted.script(
        "/api/models",
        lambda seen: (
            Answer(200, json.dumps([_entry(3)]).encode())
            if "cursor=2" in seen.path
            else Answer(
                200,
                json.dumps([_entry(1), {"id": "../evil"}, {"id": "org/bad", "siblings": 3}, _entry(2)]).encode(),
                {"Link": f'<{page2}>; rel="next"'},
            )
        ),
    )
    client = make_client(scripted.url, clock)
    models = client.list_models(sort="created_at", expand=["sha"])
    assert next(models).id == "org/m1" and len(scripted.requests) == 1  # nothing fetched ahead
    assert [m.id for m in models] == ["org/m2", "org/m3"]
    assert len(scripted.requests) == 2 and client.stats.skipped_entries == 2
    assert "sort=created_at" in scripted.requests[0].path and "expand=sha" in scripted.requests[0].path


def test_a_next_page_on_another_host_is_refused(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script(
        "/api/models", Answer(200, json.dumps([_entry(1)]).encode(), {"Link": '<http://evil.example/p2>; rel="next"'})
    )
    with pytest.raises(BadAnswerError, match="another host"):
        list(make_client(scripted.url, clock).list_models())


def test_listing_on_the_local_hub_follows_pages_and_limit(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    localhub.options.page_size = 2
    for i in range(5):
        localhub.add_repo(f"lab/m{i}", model_files(seed=i))
    client = make_client(localhub.url, clock)
    assert len(list(client.list_models(sort="created_at"))) == 5
    assert client.stats.requests == 3
    assert len(client.walk_models("created_at", ["sha"], lambda m: False, limit=3)) == 3


def test_ranged_reads_redirects_and_416(localhub, clock: FakeClock) -> None:  # noqa: ANN001
    files = model_files()
    localhub.add_repo("lab/x", files)
    client = make_client(localhub.url, clock)
    blob = files["model.safetensors"]
    assert client.read_range("lab/x", "model.safetensors", 3, 20) == blob[3:20]
    localhub.options.redirect_resolve = True
    assert client.read_range("lab/x", "model.safetensors", 0, 8) == blob[:8]
    assert client.read_file("lab/x", "config.json") == b'{"model_type": "llama"}'
    with pytest.raises(NotFoundError):
        client.read_file("lab/x", "missing.json")


def test_a_server_ignoring_range_is_sliced_and_a_loop_refused(scripted: ScriptedServer, clock: FakeClock) -> None:
    scripted.script("/org/x/resolve/main/a.bin", Answer(200, bytes(range(100))))
    scripted.script("/org/x/resolve/main/loop", Answer(302, b"", {"Location": "/org/x/resolve/main/loop"}))
    scripted.script("/org/x/resolve/main/short", Answer(416, b""))
    client = make_client(scripted.url, clock)
    assert client.read_range("org/x", "a.bin", 10, 20) == bytes(range(10, 20))
    with pytest.raises(BadAnswerError, match="redirect"):
        client.read_range("org/x", "loop", 0, 10)
    with pytest.raises(Exception, match="416"):
        client.read_range("org/x", "short", 0, 10)


def test_downloads_are_atomic(scripted: ScriptedServer, clock: FakeClock, tmp_path: Path) -> None:
    # Content-Length promises more than is sent: the connection drops mid-body, every try.
    scripted.script("/org/x/resolve/main/w.safetensors", Answer(200, b"x" * 10, {"Content-Length": "1000"}))
    client = make_client(scripted.url, clock, max_retries=1)
    with pytest.raises(Exception, match="failed after 2 tries"):
        client.download("org/x", "w.safetensors", tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []
    scripted.script("/org/x/resolve/main/w.safetensors", Answer(200, b"x" * 10))
    assert client.download("org/x", "w.safetensors", tmp_path / "w.safetensors").read_bytes() == b"x" * 10
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_snapshot_never_fetches_pickles(localhub, clock: FakeClock, tmp_path: Path) -> None:  # noqa: ANN001
    localhub.add_repo("lab/x", {**model_files(), "pytorch_model.bin": b"\x80pickle", "sub/model.pt": b"x"})
    client = make_client(localhub.url, clock)
    folder = client.snapshot("lab/x", tmp_path, allow=["*"])
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == ["README.md", "config.json", "model.safetensors"]
    assert folder.name == client.model_info("lab/x").sha
