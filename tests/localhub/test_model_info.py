"""model_info and safetensors metadata through the real huggingface_hub client."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from tests.localhub.helpers import sharded_repo, single_repo


def test_model_info_fields(localhub, hf_api: HfApi) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sha = localhub.add_repo("acme/merged", single_repo(), created_at=created, config={"downloads": 7, "likes": 2})
    info = hf_api.model_info("acme/merged")
    assert info.id == "acme/merged" and info.author == "acme"
    assert info.sha == sha and len(sha) == 40
    assert info.created_at == created
    assert info.downloads == 7 and info.likes == 2 and info.private is False and info.gated is False
    assert info.card_data.base_model == ["org/base-a", "org/base-b"]
    assert info.card_data.base_model_relation == "merge"
    assert {"mergekit", "merge", "safetensors", "base_model:merge:org/base-a"} <= set(info.tags)
    assert info.config["model_type"] == "llama"
    assert info.safetensors.parameters == {"F32": 128, "F16": 192}
    assert info.safetensors.total == 320
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert set(sizes) == {"model.safetensors", "config.json", "README.md"}
    assert sizes["config.json"] == len(json.dumps({"model_type": "llama", "hidden_size": 8}))


def test_files_metadata_gives_blob_ids_and_lfs(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/merged", single_repo())
    info = hf_api.model_info("acme/merged", files_metadata=True)
    by_name = {s.rfilename: s for s in info.siblings}
    weights = by_name["model.safetensors"]
    assert weights.lfs is not None and len(weights.lfs.sha256) == 64 and weights.lfs.size == weights.size
    assert by_name["config.json"].lfs is None and len(by_name["config.json"].blob_id) == 40


def test_sha_changes_with_content_and_revisions(localhub, hf_api: HfApi) -> None:
    sha1 = localhub.add_repo("acme/m", single_repo(seed=1))
    assert localhub.sha("acme/m") == sha1  # stable while nothing changes
    sha2 = localhub.update_repo("acme/m", {"extra.txt": "hello"})
    assert sha2 != sha1 and hf_api.model_info("acme/m").sha == sha2
    old = localhub.add_repo("acme/m", single_repo(seed=2), revision="v1")
    info = hf_api.model_info("acme/m", revision="v1")
    assert info.sha == old and "extra.txt" not in {s.rfilename for s in info.siblings}
    assert hf_api.model_info("acme/m", revision=old).sha == old  # by commit sha too


def test_quick_same_size_rewrites_change_sha_and_etag(localhub, hf_api: HfApi) -> None:
    # File mtimes tick every few ms; the server must still see each rewrite as a new commit.
    localhub.add_repo("acme/q", {"w.safetensors": b"a" * 64})
    shas = {localhub.update_repo("acme/q", {"w.safetensors": bytes([65 + i]) * 64}) for i in range(20)}
    assert len(shas) == 20
    etag = hf_api.get_paths_info("acme/q", ["w.safetensors"])[0].lfs.sha256
    import hashlib

    assert etag == hashlib.sha256(bytes([65 + 19]) * 64).hexdigest()


def test_expand_returns_only_those_fields(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/m", single_repo())
    info = hf_api.model_info("acme/m", expand=["sha", "safetensors"])
    assert info.sha and info.safetensors.total == 320
    assert info.siblings is None and info.config is None


def test_missing_repo_and_revision(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/m", single_repo())
    with pytest.raises(RepositoryNotFoundError) as exc:
        hf_api.model_info("acme/nope")
    assert exc.value.response.status_code == 404
    assert exc.value.response.headers["X-Error-Code"] == "RepoNotFound"
    assert "error" in exc.value.response.json()
    with pytest.raises(RevisionNotFoundError):
        hf_api.model_info("acme/m", revision="v9")
    assert not hf_api.repo_exists("acme/nope") and hf_api.repo_exists("acme/m")


def test_safetensors_metadata_single(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/m", single_repo())
    meta = hf_api.get_safetensors_metadata("acme/m")
    assert not meta.sharded
    tensors = meta.files_metadata["model.safetensors"].tensors
    assert tensors["model.embed_tokens.weight"].shape == [16, 8]
    assert meta.files_metadata["model.safetensors"].metadata == {"format": "pt"}
    assert meta.parameter_count == {"F32": 128, "F16": 192}


def test_safetensors_metadata_sharded_both_ways(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/sharded", sharded_repo())
    meta = hf_api.get_safetensors_metadata("acme/sharded")
    assert meta.sharded and len(meta.files_metadata) == 2
    assert meta.metadata == {"total_size": 123}
    one_call = hf_api.get_sharded_safetensors_metadata("acme/sharded")
    assert one_call.weight_map == meta.weight_map
    assert one_call.parameter_count == meta.parameter_count == {"F32": 128, "F16": 192}
    assert hf_api.model_info("acme/sharded").safetensors.total == 320


def test_bad_safetensors_does_not_break_model_info(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/bad", {"model.safetensors": b"\xff" * 20, "README.md": "---\n: [unclosed\n---\n"})
    info = hf_api.model_info("acme/bad")
    assert info.safetensors is None and info.card_data is None


def test_hostile_revision_names_get_a_clean_404(localhub, hf_api: HfApi) -> None:
    localhub.add_repo("acme/m", single_repo())
    for rev in ["ünïcode", "../../etc", "a\nb", "x" * 300]:
        with pytest.raises(RevisionNotFoundError):
            hf_api.model_info("acme/m", revision=rev)
