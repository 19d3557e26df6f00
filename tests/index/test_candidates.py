"""Candidate selection on real tiny models and mergekit merges (what `provbot scan CHILD` runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provbot.bot.index.candidates import select_candidates
from provbot.bot.index.ingest import add_models
from provbot.bot.index.store import IndexStore


@pytest.fixture(scope="module")
def llama_index(tmp_path_factory: pytest.TempPathFactory, family_paths: dict[str, str]) -> IndexStore:
    """Base, three sibling fine-tunes (no base flag: the base must be found by itself)."""
    store = IndexStore(f"sqlite:///{tmp_path_factory.mktemp('cand') / 'index.db'}")
    outcomes = add_models([family_paths[n] for n in ("base", "a", "b", "c")], store)
    assert [o.status for o in outcomes] == ["added"] * 4
    return store


def names(refs: list[str]) -> list[str]:
    return [Path(r).name for r in refs]


@pytest.mark.parametrize("child", ["llama_linear", "llama_ties"])
def test_merge_parents_are_chosen_first_with_the_base(model_zoo, llama_index: IndexStore, child: str) -> None:
    report = select_candidates(str(model_zoo.path(child)), store=llama_index)
    assert report.match == "exact" and report.inconclusive is None
    assert report.family_size == 4
    assert set(names(report.chosen[:2])) == {"llama_a", "llama_b"}
    assert names(report.chosen)[-1] == "llama_base" and Path(report.base).name == "llama_base"
    considered = {Path(c.ref).name: c for c in report.considered}
    assert considered["llama_c"].share < 0.1  # the sibling explains nothing
    assert considered["llama_a"].share > 0.2 and "explains" in considered["llama_a"].reason


def test_linear_merge_weights_come_out(model_zoo, llama_index: IndexStore) -> None:
    report = select_candidates(str(model_zoo.path("llama_linear")), store=llama_index)
    w = {Path(c.ref).name: c.weight for c in report.considered}
    assert w["llama_a"] == pytest.approx(0.6, abs=0.01) and w["llama_b"] == pytest.approx(0.4, abs=0.01)
    assert report.fit_r2 == pytest.approx(1.0, abs=1e-3)


def test_copy_cast_to_bf16_points_at_its_original(model_zoo, llama_index: IndexStore) -> None:
    report = select_candidates(str(model_zoo.path("llama_bf16")), store=llama_index)
    assert names(report.chosen) == ["llama_a", "llama_base"]


def test_a_fine_tune_of_the_base_sends_only_the_base(family_paths, tmp_path: Path) -> None:
    store = IndexStore(f"sqlite:///{tmp_path / 'i.db'}")
    add_models([family_paths[n] for n in ("base", "a", "b")], store)
    report = select_candidates(family_paths["c"], store=store)
    assert names(report.chosen) == ["llama_base"]
    assert any("only the base" in n for n in report.notes)


def test_child_already_indexed_is_not_its_own_candidate(family_paths, llama_index: IndexStore) -> None:
    report = select_candidates(family_paths["a"], store=llama_index)
    assert all(Path(c.ref).name != "llama_a" for c in report.considered)


def test_unindexed_family_is_inconclusive_not_a_guess(model_zoo, llama_index: IndexStore) -> None:
    report = select_candidates(str(model_zoo.path("minilm")), store=llama_index)
    assert report.match == "none" and report.chosen == [] and report.base is None
    assert report.inconclusive.startswith("family not indexed") and "bert" in report.inconclusive


def test_depth_upscaled_child_uses_the_loose_family(model_zoo, llama_index: IndexStore) -> None:
    report = select_candidates(str(model_zoo.path("llama_passthrough")), store=llama_index)
    assert report.match == "loose" and report.inconclusive is None
    assert "llama_a" in names(report.chosen)
    assert any("partial-shape" in n for n in report.notes)


def test_declared_base_is_preferred(model_zoo, family_paths, tmp_path: Path) -> None:
    import shutil

    child = tmp_path / "declared"
    shutil.copytree(model_zoo.path("llama_linear"), child)
    (child / "README.md").write_text("---\nbase_model: [x/a, x/b]\ntags: [merge]\n---\n# card\n")
    store = IndexStore(f"sqlite:///{tmp_path / 'i.db'}")
    add_models([family_paths[n] for n in ("base", "a", "b")], store)
    report = select_candidates(str(child), store=store)
    assert any("declared base_model not in this family's index: x/a, x/b" in n for n in report.notes)


def test_scan_without_parents_runs_the_full_scan_on_the_chosen(model_zoo, family_paths, tmp_path: Path) -> None:
    from provbot.bot.index.autoscan import scan_with_index

    store = IndexStore(f"sqlite:///{tmp_path / 'i.db'}")
    child = str(model_zoo.path("llama_linear"))
    add_models([family_paths[n] for n in ("base", "a", "b", "c")] + [child], store)
    report, result = scan_with_index(child, store=store)
    assert result.relation == "merge"
    assert {Path(p.ref).name for p in result.parents} >= {"llama_a", "llama_b"}
    assert any("candidates chosen by the index" in n for n in result.notes)
    assert store.get(child).conclusion["relation"] == "merge"

    minilm = str(model_zoo.path("minilm"))
    report, result = scan_with_index(minilm, store=store)
    assert result.relation == "inconclusive" and "family not indexed" in result.notes[0]


def test_cli_scan_without_parents_uses_the_index(model_zoo, family_paths, tmp_path: Path) -> None:
    """`provbot index add` then `provbot scan CHILD --json` with no --parent, as a user runs them."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROVBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    cli = [sys.executable, "-m", "provbot.bot.cli"]
    added = subprocess.run(
        [*cli, "index", "add", *(family_paths[n] for n in ("base", "a", "b", "c"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert added.returncode == 0, added.stderr
    out = subprocess.run(
        [*cli, "scan", str(model_zoo.path("llama_linear")), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["relation"] == "merge"
    assert {Path(p["ref"]).name for p in result["parents"]} >= {"llama_a", "llama_b"}
