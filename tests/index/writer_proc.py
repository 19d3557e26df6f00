"""Helper run as a separate process by the concurrency test: upsert N synthetic models.

Usage: python -m tests.index.writer_proc URL PREFIX N
"""

from __future__ import annotations

import sys

import numpy as np

from provbot.bot.index.fingerprint import Fingerprint
from provbot.bot.index.sketch import Sketch, SketchEntry
from provbot.bot.index.store import IndexEntry, IndexStore


def synthetic_entry(ref: str, revision: str = "r1", family: str = "fam-a", seed: int = 0) -> IndexEntry:
    rng = np.random.default_rng(seed)
    entries = [SketchEntry("layers.0.mlp.up_proj.weight", (64, 64), 256), SketchEntry("norm.weight", (64,), 32)]
    sketch = Sketch(entries=entries, values=rng.normal(size=288).astype(np.float32))
    fp = Fingerprint(
        family_key=family,
        loose_key=f"loose-{family}",
        arch={"model_type": "llama"},
        tensors=2,
        params=4160,
        dtype="BF16",
        layers=1,
    )
    return IndexEntry(ref=ref, source="hub", revision=revision, fingerprint=fp, sketch=sketch)


def main() -> None:
    url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = IndexStore(url)
    for i in range(n):
        store.upsert(synthetic_entry(f"{prefix}/m{i}", seed=i))
        store.upsert(synthetic_entry(f"shared/m{i}", revision=f"{prefix}-r", seed=i))  # both processes write these


if __name__ == "__main__":
    main()
