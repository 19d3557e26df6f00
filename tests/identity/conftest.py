"""Fixtures of the identity tests: the committed tiny persona models and session-cached detector runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.personas import PERSONA_DIRS


@pytest.fixture(scope="session")
def personas() -> dict[str, Path]:
    missing = [str(p) for p in PERSONA_DIRS.values() if not (p / "model.safetensors").is_file()]
    if missing:
        pytest.fail(f"persona fixtures missing ({', '.join(missing)}); run tests/identity/make_personas.py")
    return dict(PERSONA_DIRS)


@pytest.fixture(scope="session")
def identity_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity-cache")


@pytest.fixture(scope="session")
def rio_result(personas, identity_cache):
    """The whole prompt set on the Rio merge, compared with both parents, baseline from the unrelated model."""
    from provbot.detectors.identity import run_identity

    return run_identity(
        str(personas["rio-merge"]),
        candidates=[str(personas["nex-ft"]), str(personas["qwen-base"])],
        baselines=[str(personas["orla-unrelated"])],
        samples=1,
        device="cpu",
        batch_size=48,
        cpu_threads=1,
        cache_dir=identity_cache,
    )


@pytest.fixture(scope="session")
def orla_result(personas, identity_cache):
    """The unrelated persona as the child: it must show neither claim nor recitation, of a listed (Nex) or
    an unlisted (Zorvex) candidate persona."""
    from provbot.detectors.identity import run_identity

    return run_identity(
        str(personas["orla-unrelated"]),
        candidates=[str(personas["nex-ft"]), str(personas["zorvex-ft"])],
        system_prompt=None,
        samples=1,
        prompt_limit=16,
        device="cpu",
        batch_size=48,
        cpu_threads=1,
        cache_dir=identity_cache,
    )


@pytest.fixture(scope="session")
def nova_result(personas, identity_cache):
    """The Rio case with personas nobody listed: the Nova merge compared with both parents (qwen-base and
    the baseline model's answers come from the session cache when ``rio_result`` ran first)."""
    from provbot.detectors.identity import run_identity

    return run_identity(
        str(personas["nova-merge"]),
        candidates=[str(personas["zorvex-ft"]), str(personas["qwen-base"])],
        baselines=[str(personas["orla-unrelated"])],
        samples=1,
        device="cpu",
        batch_size=48,
        cpu_threads=1,
        cache_dir=identity_cache,
    )
