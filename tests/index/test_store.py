"""IndexStore on SQLite and PostgreSQL: upserts by revision, reads, removal, concurrent writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from provbot.bot.index.store import IndexStore
from tests.index.writer_proc import synthetic_entry

REPO = Path(__file__).resolve().parents[2]


def test_add_then_same_revision_is_unchanged_and_new_revision_updates(store: IndexStore) -> None:
    assert store.upsert(synthetic_entry("org/m", revision="r1", seed=1)) == "added"
    assert store.upsert(synthetic_entry("org/m", revision="r1", seed=1)) == "unchanged"
    assert store.upsert(synthetic_entry("org/m", revision="r2", family="fam-b", seed=2)) == "updated"
    rec = store.get("org/m")
    assert rec.revision == "r2" and rec.family_key == "fam-b" and store.count() == 1
    assert store.members("fam-a") == [] and [m.ref for m in store.members("fam-b")] == ["org/m"]
    sk = store.sketches(["org/m"])["org/m"]
    np.testing.assert_array_equal(sk.values, synthetic_entry("x", seed=2).sketch.values)


def test_family_reads_screens_and_sketches(store: IndexStore) -> None:
    for i in range(5):
        store.upsert(synthetic_entry(f"org/m{i}", seed=i, family="fam-a" if i < 3 else "fam-b"))
    members, screens = store.screens("fam-a")
    assert [m.ref for m in members] == ["org/m0", "org/m1", "org/m2"]
    assert screens.shape == (3, 288)
    np.testing.assert_allclose(screens[1], synthetic_entry("x", seed=1).sketch.values, rtol=1e-3, atol=1e-4)
    store.upsert(synthetic_entry("org/m9", seed=9))  # the cached matrix must notice
    assert len(store.screens("fam-a")[0]) == 4
    assert [r.ref for r in store.family("fam-b")] == ["org/m3", "org/m4"]
    assert store.family("fam-b")[0].sketch_elements == 288
    assert set(store.sketches(["org/m3", "org/nope"])) == {"org/m3"}


def test_seeded_base_flag_survives_a_plain_re_add(store: IndexStore) -> None:
    entry = synthetic_entry("org/base")
    entry.is_base, entry.family_name = True, "llama"
    store.upsert(entry)
    store.upsert(synthetic_entry("org/base", revision="r2"))
    rec = store.get("org/base")
    assert rec.is_base and rec.family_name == "llama" and rec.revision == "r2"


def test_remove_conclusion_failures_and_crawl_state(store: IndexStore) -> None:
    store.upsert(synthetic_entry("org/m"))
    assert store.record_conclusion("org/m", "r1", {"relation": "merge", "parents": ["a", "b"]})
    rec = store.get("org/m")
    assert rec.conclusion["relation"] == "merge" and rec.conclusion_revision == "r1"
    assert not store.record_conclusion("org/none", "r1", {})
    store.record_failure("org/bad", None, "org/bad: header length past the end of the file")
    assert store.failures()[0].message.startswith("org/bad")
    store.save_crawl_state("c", {"handled": ["x"]})
    store.save_crawl_state("c", {"handled": ["x", "y"]})
    assert store.crawl_state("c") == {"handled": ["x", "y"]} and store.crawl_state("other") == {}
    assert store.remove("org/m") and not store.remove("org/m")
    assert store.get("org/m") is None and store.sketches(["org/m"]) == {}


def test_two_processes_adding_models_lose_nothing(db_url: str) -> None:
    IndexStore(db_url)  # migrate once first, as `provbot` does on open
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.index.writer_proc", db_url, p, "15"],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in ("alpha", "beta")
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    store = IndexStore(db_url)
    refs = {r.ref for r in store.list()}
    assert {f"alpha/m{i}" for i in range(15)} <= refs and {f"beta/m{i}" for i in range(15)} <= refs
    assert len(refs) == 45  # 15 + 15 + 15 shared, no duplicates
    assert len(store.sketches(sorted(refs))) == 45
