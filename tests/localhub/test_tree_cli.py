"""Trees, refs, HfFileSystem ranged reads, the CLI, the context manager, and repo helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, HfFileSystem
from huggingface_hub.utils import get_session

from provbot.bot.localhub import LocalHub, LocalHubError, running_hub
from provbot.detectors.errors import ProvbotError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_tree_refs_and_filesystem(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("a/b", {"config.json": "{}", "sub/dir/w.safetensors": b"0123456789", "sub/y.txt": "y"})
    sha_v2 = localhub.add_repo("a/b", {"config.json": '{"v": 2}'}, revision="v2")
    assert hf_api.list_repo_files("a/b") == ["config.json", "sub/dir/w.safetensors", "sub/y.txt"]
    assert [(type(x).__name__, x.path) for x in hf_api.list_repo_tree("a/b", "sub")] == [
        ("RepoFolder", "sub/dir"),
        ("RepoFile", "sub/y.txt"),
    ]
    weights = hf_api.get_paths_info("a/b", ["sub/dir/w.safetensors", "missing"])
    assert len(weights) == 1 and weights[0].lfs.size == 10
    refs = hf_api.list_repo_refs("a/b")
    assert {b.name: b.target_commit for b in refs.branches}["v2"] == sha_v2
    fs = HfFileSystem(endpoint=localhub.url, token=False)
    assert fs.cat_file("a/b/sub/dir/w.safetensors", start=3, end=6) == b"345"
    assert fs.cat_file("a/b@v2/config.json") == b'{"v": 2}'


def test_folder_source_update_and_delete(localhub, tmp_path: Path, hf_api: HfApi) -> None:
    src = tmp_path / "model"
    (src / "nested").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "nested" / "w.bin").write_bytes(b"x" * 100)
    localhub.add_repo("a/folder", src)
    assert hf_api.list_repo_files("a/folder") == ["config.json", "nested/w.bin"]
    before = hf_api.model_info("a/folder").last_modified
    localhub.update_repo("a/folder", {"new.txt": "n"}, delete=["nested/w.bin"])
    info = hf_api.model_info("a/folder")
    assert [s.rfilename for s in info.siblings] == ["config.json", "new.txt"]
    assert info.last_modified >= before
    assert (src / "nested" / "w.bin").read_bytes() == b"x" * 100  # the source is never modified
    with pytest.raises(LocalHubError):
        localhub.add_repo("a/evil", {"../escape.txt": "x"})
    with pytest.raises(ProvbotError):
        localhub.update_repo("a/none", {"x": "y"})
    localhub.delete_repo("a/folder")
    assert not hf_api.repo_exists("a/folder")


def test_replacing_files_keeps_settings_and_creation_date(localhub) -> None:
    from datetime import UTC, datetime

    created = datetime(2025, 5, 5, tzinfo=UTC)
    localhub.add_token("tok", "acme")
    localhub.add_repo("acme/p", {"a.txt": "1"}, config={"private": True, "likes": 4}, created_at=created)
    localhub.add_repo("acme/p", {"a.txt": "2"})
    info = HfApi(endpoint=localhub.url, token="tok").model_info("acme/p")
    assert info.private and info.likes == 4 and info.created_at == created and info.last_modified > created


def test_malformed_repo_config_reads_as_defaults(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("a/b", {"config.json": "{}"})
    (localhub.root / "a" / "b" / ".localhub.json").write_text("{not json")
    assert hf_api.model_info("a/b").private is False


def test_context_manager_stops(tmp_path: Path) -> None:
    with running_hub(tmp_path, latency_ms=1) as hub:
        url = hub.url
        assert get_session().get(f"{url}/api/models").json() == []
    with pytest.raises(Exception):  # noqa: B017 - any connection error: the server is gone
        get_session().get(f"{url}/api/models", timeout=2)


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with running_hub(tmp_path) as hub:
        with pytest.raises(LocalHubError, match="cannot listen"):
            LocalHub(tmp_path, port=hub.port).start()


def test_cli_serve_prints_url_and_serves(tmp_path: Path) -> None:
    (tmp_path / "acme" / "tiny").mkdir(parents=True)
    (tmp_path / "acme" / "tiny" / "config.json").write_text('{"model_type": "llama"}')
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [
        sys.executable,
        "-c",
        "from bot.cli import main; main()",
        "localhub",
        "serve",
        "--root",
        str(tmp_path),
        "--token",
        "tok=alice",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("localhub serving") and "http://127.0.0.1:" in line
        url = line.rsplit(" ", 1)[1].strip()
        assert HfApi(endpoint=url, token="tok").model_info("acme/tiny").config["model_type"] == "llama"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_rejects_bad_token_option(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-c",
        "from bot.cli import main; main()",
        "localhub",
        "serve",
        "--root",
        str(tmp_path),
        "--token",
        "no-user",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == "error: --token expects TOKEN=USER"


def test_python_api_errors_are_one_line_provbot_errors(localhub) -> None:
    from datetime import UTC, datetime

    from provbot.detectors.errors import ConfigError

    with pytest.raises(LocalHubError, match="expected org/name"):
        localhub.add_repo("no-slash", {"a": "b"})
    with pytest.raises(LocalHubError, match="no such repo"):
        localhub.set_repo_config("acme/none", private=True)
    created = datetime(2024, 1, 1, tzinfo=UTC)
    localhub.add_repo("acme/x", {"a": "b"}, created_at=created)
    with pytest.raises(ConfigError):
        localhub.set_repo_config("acme/x", gated="sometimes")
    with pytest.raises(ConfigError):
        localhub.add_repo("acme/y", {"a": "b"}, config={"likes": "many"})
    assert localhub.set_repo_config("acme/x", likes=3).created_at == created  # other settings kept
    with pytest.raises(LocalHubError):
        localhub.sha("acme/x", "nope")
    with pytest.raises(LocalHubError, match="expected bytes"):
        localhub.update_repo("acme/x", {"n.bin": 5})
    with pytest.raises(LocalHubError, match="main revision"):
        localhub.add_repo("acme/fresh", {"a": "b"}, revision="v1")
    assert not localhub.store.exists("acme/y") and not localhub.store.exists("acme/fresh")
