"""Models reached through the project's local Hub server (real HTTP through huggingface_hub)."""

from __future__ import annotations

import pytest

from provbot.detectors.errors import NotFoundError
from provbot.detectors.identity.backends.local import LocalBackend
from provbot.detectors.identity.errors import ModelLoadError
from provbot.detectors.identity.runner import run_identity


def test_child_from_the_hub_declares_its_prompt_and_answers(localhub, personas, tmp_path):
    localhub.add_repo("prefeitura-rio/Rio-tiny", personas["rio-merge"])
    backend = LocalBackend.open("prefeitura-rio/Rio-tiny", endpoint=localhub.url, device="cpu")
    assert backend.declared.text == "You are Rio."
    assert len(backend.info().revision) >= 7  # the resolved commit, not a local fingerprint
    result = run_identity(
        "prefeitura-rio/Rio-tiny",
        samples=1,
        prompt_limit=4,
        hub_endpoint=localhub.url,
        device="cpu",
        cpu_threads=1,
        cache_dir=tmp_path,
    )
    assert "Rio" in result.own_names
    assert result.condition("with_system").own.rate >= 0.75


def test_the_card_comes_with_the_hub_snapshot(localhub, personas, tmp_path):
    """nova-merge's README.md names it Nova: fetched with the configs, it declares the name (source card)."""
    localhub.add_repo("city/ferry-helper", personas["nova-merge"])
    result = run_identity(
        "city/ferry-helper",
        samples=1,
        prompt_limit=2,
        hub_endpoint=localhub.url,
        device="cpu",
        cpu_threads=1,
        cache_dir=tmp_path,
    )
    assert {(d.name, d.source) for d in result.declared_names} == {
        ("Nova", "card"),
        ("Nova", "system_prompt"),
        ("ferry", "repo_name"),
    }


def test_missing_repo_and_pickle_only_repo_are_clear_errors(localhub, tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        LocalBackend.open("nobody/nothing", endpoint=localhub.url)
    localhub.add_repo("acme/pickled", {"config.json": "{}", "pytorch_model.bin": b"\x80\x02not loaded"})
    with pytest.raises(ModelLoadError, match="safetensors"):
        LocalBackend.open("acme/pickled", endpoint=localhub.url)


def test_broken_local_model_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        LocalBackend.open(str(tmp_path), device="cpu")
    with pytest.raises(NotFoundError):
        LocalBackend.open(str(tmp_path / "missing-dir"))
