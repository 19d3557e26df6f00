"""Benchmarks of the candidate-parent index (run on purpose; prints figures for the README).

1. Ranking: one family of 1,000 synthetic models of one shape (bases, fine-tunes, merges), sketches
   of the real layout (entries x 256 values). For merges of two fine-tunes (some trained a little
   afterwards) it checks that both true parents are in the top 3 and times the ranking: in memory
   (base choice, shortlist, fit) and end to end through the SQLite store (load the family's
   screening vectors and the shortlisted sketches too): cold (first child of the family in this
   process) and warm (the family's screening matrix cached, as in the service).
2. Family lookup: 100,000 index entries across 5,000 families; times ``IndexStore.members(key)`` (what candidate
   selection runs) and ``IndexStore.family(key)`` (full records).

Usage::

    .venv/bin/python bench/index_bench.py                   # SQLite files under bench/out/
    .venv/bin/python bench/index_bench.py --postgres URL    # also time the lookup on PostgreSQL
    .venv/bin/python bench/index_bench.py --quick           # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# One BLAS thread: the figures then do not depend on how busy the other cores are.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from provbot.bot.index.candidates import _select  # noqa: E402
from provbot.bot.index.fingerprint import Fingerprint  # noqa: E402
from provbot.bot.index.ingest import Indexed  # noqa: E402
from provbot.bot.index.ranking import fit_deltas, pick_base, shortlist  # noqa: E402
from provbot.bot.index.sketch import PER_MATRIX, PER_VECTOR, Sketch, SketchEntry  # noqa: E402
from provbot.bot.index.store import Declared, IndexEntry, IndexStore  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def layout(layers: int) -> list[SketchEntry]:
    """Sketch entries of a Llama-like model with ``layers`` layers (hidden 2048)."""
    entries = [
        SketchEntry("embed_tokens.weight", (4096, 2048), PER_MATRIX),
        SketchEntry("norm.weight", (2048,), PER_VECTOR),
        SketchEntry("lm_head.weight", (4096, 2048), PER_MATRIX),
    ]
    for i in range(layers):
        for part, shape in (
            ("self_attn.q_proj", (2048, 2048)),
            ("self_attn.k_proj", (512, 2048)),
            ("self_attn.v_proj", (512, 2048)),
            ("self_attn.o_proj", (2048, 2048)),
            ("mlp.gate_proj", (8192, 2048)),
            ("mlp.up_proj", (8192, 2048)),
            ("mlp.down_proj", (2048, 8192)),
        ):
            entries.append(SketchEntry(f"layers.{i}.{part}.weight", shape, PER_MATRIX))
        entries.append(SketchEntry(f"layers.{i}.input_layernorm.weight", (2048,), PER_VECTOR))
        entries.append(SketchEntry(f"layers.{i}.post_attention_layernorm.weight", (2048,), PER_VECTOR))
    return sorted(entries, key=lambda e: e.name)


def make_family(
    n: int, dim: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray, set[int], dict[str, list[str]]]:
    """``n`` models: 3 bases, ~70% fine-tunes (siblings share a data component), ~30% merges."""
    refs, rows, parents = [], [], {}
    root = rng.normal(0, 0.02, dim).astype(np.float32)
    bases = [
        root,
        root + rng.normal(0, 2e-3, dim).astype(np.float32),
        root + rng.normal(0, 2e-3, dim).astype(np.float32),
    ]
    shared = rng.normal(0, 1e-3, dim).astype(np.float32)  # what fine-tunes on similar data have in common
    for i, b in enumerate(bases):
        refs.append(f"org/base-{i}")
        rows.append(b)
    n_ft = int(0.7 * n)
    ft_rows = []
    for i in range(n_ft):
        b = rng.integers(0, 3)
        delta = 0.5 * shared + rng.normal(0, 1e-3, dim).astype(np.float32)
        ft_rows.append(len(rows))
        refs.append(f"org/ft-{i}")
        rows.append(bases[b] + delta)
        parents[refs[-1]] = [refs[b]]
    while len(rows) < n:
        k = rng.integers(2, 4)
        picks = rng.choice(ft_rows, size=k, replace=False)
        w = rng.dirichlet(np.ones(k)).astype(np.float32)
        refs.append(f"org/merge-{len(rows)}")
        rows.append(sum(wi * rows[p] for wi, p in zip(w, picks)))
        parents[refs[-1]] = [refs[p] for p in picks]
    return refs, np.stack(rows).astype(np.float32), {0, 1, 2}, parents


def bench_ranking(n: int, layers: int, trials: int, rng: np.random.Generator) -> dict:
    entries = layout(layers)
    dim = sum(e.n for e in entries)
    t = time.perf_counter()
    refs, rows, base_rows, _parents = make_family(n, dim, rng)
    gen_s = time.perf_counter() - t
    sketches = [Sketch(entries=entries, values=row) for row in rows]
    screens = np.stack([s.screen() for s in sketches])
    ft = [i for i, r in enumerate(refs) if r.startswith("org/ft-")]

    # A store holding the family, for the end-to-end timing.
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / "rank_bench.db"
    for suffix in ("", "-wal", "-shm", ".migrate.lock"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    store = IndexStore(f"sqlite:///{db}")
    fp = Fingerprint(
        family_key="bench-family",
        loose_key="bench-loose",
        arch={"model_type": "llama"},
        tensors=len(entries),
        params=0,
        layers=layers,
    )
    t = time.perf_counter()
    for i, (ref, sk) in enumerate(zip(refs, sketches)):
        store.upsert(
            IndexEntry(ref=ref, source="hub", revision="r1", fingerprint=fp, is_base=i in base_rows, sketch=sk)
        )
    load_s = time.perf_counter() - t

    hits, hits_with_base, mem_ms, e2e_ms = 0, 0, [], []
    for _trial in range(trials):
        a, b = rng.choice(ft, size=2, replace=False)
        w = float(rng.uniform(0.3, 0.7))
        child = w * rows[a] + (1 - w) * rows[b]
        if _trial % 2:  # trained a little after merging
            child = child + rng.normal(0, 2e-4, dim).astype(np.float32)
        child = child.astype(np.float32)
        child_sketch = Sketch(entries=entries, values=child)
        cs = child_sketch.screen()

        t = time.perf_counter()
        base = pick_base(cs, screens, sorted(base_rows))
        short = shortlist(cs, screens, base)
        fit = fit_deltas(child, rows[[i for i, _ in short]], rows[base])
        mem_ms.append(1000 * (time.perf_counter() - t))
        top = [short[i][0] for i in np.argsort(-np.array(fit.shares))[:3]]
        hits += {a, b} <= set(top)

        indexed = Indexed(
            ref="org/child", source="hub", revision="c1", fingerprint=fp, declared=Declared(), sketch=child_sketch
        )
        t = time.perf_counter()
        report = _select(indexed, store, top=3)
        e2e_ms.append(1000 * (time.perf_counter() - t))
        hits_with_base += {refs[a], refs[b]} <= set(report.chosen[:3])
    return {
        "models": n,
        "sketch_values": dim,
        "sketch_kb": round(dim * 4 / 1024, 1),
        "generate_s": round(gen_s, 2),
        "store_load_s": round(load_s, 2),
        "trials": trials,
        "parents_in_top3": f"{hits}/{trials}",
        "parents_in_chosen3_e2e": f"{hits_with_base}/{trials}",
        "rank_in_memory_ms_median": round(statistics.median(mem_ms), 2),
        "rank_in_memory_ms_max": round(max(mem_ms), 2),
        "rank_end_to_end_cold_ms": round(e2e_ms[0], 2),
        "rank_end_to_end_warm_ms_median": round(statistics.median(e2e_ms[1:]), 2),
        "rank_end_to_end_warm_ms_max": round(max(e2e_ms[1:]), 2),
    }


def bench_lookup(url: str, entries: int, families: int, lookups: int, rng: np.random.Generator) -> dict:
    from sqlalchemy import insert

    from provbot.bot.db import session_scope
    from provbot.bot.db.models_index import IndexModel, utcnow

    store = IndexStore(url)
    with session_scope(store.engine, write=True) as session:
        session.execute(IndexModel.__table__.delete())
    now = utcnow()
    t = time.perf_counter()
    batch = []
    for i in range(entries):
        fam = int(rng.integers(0, families))
        batch.append(
            dict(
                ref=f"org{i % 977}/model-{i}",
                source="hub",
                revision="r",
                family_key=f"fam{fam:08d}",
                loose_key=f"loose{fam // 4:08d}",
                model_type="llama",
                is_base=False,
                params=7_000_000_000,
                dtype="BF16",
                fingerprint={"arch": {}},
                base_models=[],
                tags=[],
                indexed_at=now,
                updated_at=now,
            )
        )
        if len(batch) == 5000:
            with session_scope(store.engine, write=True) as session:
                session.execute(insert(IndexModel), batch)
            batch = []
    if batch:
        with session_scope(store.engine, write=True) as session:
            session.execute(insert(IndexModel), batch)
    fill_s = time.perf_counter() - t
    light, full, sizes = [], [], []
    for _ in range(lookups):
        key = f"fam{int(rng.integers(0, families)):08d}"
        t = time.perf_counter()
        members = store.members(key)  # what candidate selection runs
        light.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        store.family(key)  # full records (what `index list --family` shows)
        full.append(1000 * (time.perf_counter() - t))
        sizes.append(len(members))
    light.sort()
    full.sort()
    return {
        "backend": store.engine.dialect.name,
        "entries": store.count(),
        "families": families,
        "fill_s": round(fill_s, 2),
        "lookups": lookups,
        "mean_family_size": round(statistics.mean(sizes), 1),
        "lookup_ms_median": round(statistics.median(light), 2),
        "lookup_ms_p95": round(light[int(0.95 * len(light))], 2),
        "records_ms_median": round(statistics.median(full), 2),
        "records_ms_p95": round(full[int(0.95 * len(full))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 models, 10,000 entries")
    parser.add_argument(
        "--postgres", help="also time the family lookup on this PostgreSQL URL (its tables are emptied)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n, entries, layers = (200, 10_000, 8) if args.quick else (1000, 100_000, 16)

    print(f"ranking: family of {n} models, {layers}-layer layout")
    for k, v in bench_ranking(n, layers, trials=10 if args.quick else 20, rng=rng).items():
        print(f"  {k:<28} {v}")
    db = OUT / "lookup_bench.db"
    for suffix in ("", "-wal", "-shm", ".migrate.lock"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    targets = [f"sqlite:///{db}"] + ([args.postgres] if args.postgres else [])
    for url in targets:
        print(f"family lookup: {entries} entries")
        for k, v in bench_lookup(url, entries, families=entries // 20, lookups=200, rng=rng).items():
            print(f"  {k:<28} {v}")


if __name__ == "__main__":
    main()
