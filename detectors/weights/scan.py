"""``scan()``: read the same sampled elements of a child and its candidate parents, fit, classify.

>>> from detectors import scan                                   # doctest: +SKIP
>>> r = scan("org/child", parents=["org/a", "org/b"], base="org/base")
>>> r.relation, r.method, [(p.ref, p.weight) for p in r.parents]
('merge', 'linear', [('org/a', 0.6), ('org/b', 0.4)])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from pydantic import SecretStr

from detectors.errors import ProvbotError, ShapeMismatchError
from detectors.weights.fit import Lineage, TensorStats, streamed_stats, streamed_stats_batch, tensor_stats
from detectors.weights.layers import layer_count, layer_plans, match_layers
from detectors.weights.reader import canonical_models, iter_full, read_sample, resolve_device
from detectors.weights.relation import COPY_EQUAL_SHARE, classify
from detectors.weights.result import ScanResult
from detectors.weights.sampling import SamplePlan, plan_sample
from detectors.weights.sources import WeightSource, open_source

Progress = Callable[[int, int, str], None]  # (done, total, what)

# Full mode: whole tensors up to this size are batched, at most FULL_BATCH at a time.
FULL_BATCH = 64
FULL_BATCH_MAX_ELEMENTS = 2**20

_TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def scan(
    child: str,
    parents: Sequence[str] = (),
    base: str | None = None,
    budget_mb: float | None = None,
    full: bool = False,
    progress: Progress | None = None,
    endpoint: str | None = None,
    token: str | SecretStr | None = None,
    device: str | None = None,
) -> ScanResult:
    """Scan ``child`` against the candidates ``parents`` (+ ``base``, the declared shared ancestor).

    References are Hub ids ``org/name[@rev]`` or local directories and are echoed as given.
    Defaults (budget, endpoint, token, device) come from :mod:`bot.settings`.
    Raises :class:`~detectors.errors.ProvbotError` subclasses for anything a user can cause.
    """
    from bot.settings import get_settings

    settings = get_settings()
    started = time.monotonic()
    candidates = list(dict.fromkeys([*parents, *([base] if base else [])]))
    if not candidates:
        raise ProvbotError("give at least one candidate parent (--parent or --base)")
    if child in candidates:
        raise ProvbotError(f"{child} is both the child and a candidate")
    endpoint = endpoint or settings.hub_endpoint
    token = token if token is not None else settings.hub_token
    budget = (budget_mb if budget_mb is not None else settings.scan.budget_mb) * 2**20
    dev = resolve_device(device or settings.scan.device)

    sources = [open_source(r, endpoint=endpoint, token=token, concurrency=settings.scan.concurrency) for r in [child, *candidates]]
    try:
        models = canonical_models(sources)
        plan = plan_sample(models, budget_bytes=None if full else int(budget), full=full)
        stats = _full_stats(sources, plan, dev, progress) if full else _sampled_stats(sources, plan, dev, progress)
        # NaN/Inf anywhere (a broken or hostile file) would poison every fit: leave such tensors out.
        keep = [i for i, st in enumerate(stats) if np.all(np.isfinite(st.gram))]
        skipped = [plan.tensors[i].name for i in range(len(stats)) if i not in set(keep)]
        tensors = [plan.tensors[i] for i in keep]
        lin = Lineage(
            names=[t.name for t in tensors], stats=[stats[i] for i in keep],
            is_matrix=[len(t.shape) >= 2 for t in tensors],
            layer=[t.kind.layer for t in tensors], component=[t.kind.component for t in tensors],
            k=len(candidates),
        )
        child_layers = layer_count(models[child])
        parent_layers = {r: layer_count(models[r]) for r in candidates}
        matches = None
        if _maybe_passthrough(lin, child_layers, parent_layers):
            matches = _layer_matches(sources, models, dev)
        verdict = classify(
            lin, candidates, base=candidates.index(base) if base else None,
            child_quantized=bool(plan.quantized.get(child)), layer_matches=matches, parent_layers=parent_layers,
        )
    finally:
        for s in sources:
            s.close()
    notes = list(verdict.notes) + list(plan.notes[:5])
    if skipped:
        notes.append(f"{len(skipped)} tensor(s) with NaN/Inf values left out, e.g. {skipped[0]}")
    if child_layers != max(parent_layers.values(), default=child_layers) and verdict.method != "passthrough":
        notes.append(f"the child has {child_layers} layers, the candidates {sorted(set(parent_layers.values()))}: extra layers were not compared")
    return ScanResult(
        child=child, relation=verdict.relation, method=verdict.method, parents=verdict.parents, fit_r2=verdict.fit_r2,
        z=verdict.z, bytes_read={s.ref: s.bytes_read for s in sources}, tensors=len(lin.names), layers=verdict.layers,
        base=verdict.base, components=verdict.components, weight_spread=verdict.weight_spread, norms=verdict.norms,
        density=verdict.density, requests={s.ref: s.requests for s in sources}, elements=plan.elements,
        seconds=round(time.monotonic() - started, 3), notes=notes,
    )


def _child_dtype(plan_meta_dtype: str) -> torch.dtype | None:
    return _TORCH_DTYPES.get(plan_meta_dtype)


def _sampled_stats(sources: list[WeightSource], plan: SamplePlan, dev: torch.device, progress: Progress | None) -> list[TensorStats]:
    total = len(sources)
    done = 0

    def read(src: WeightSource) -> dict[str, torch.Tensor]:
        nonlocal done
        out = read_sample(src, plan, device="cpu")
        done += 1
        if progress:
            progress(done, total, f"read {src.ref}")
        return out

    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        samples = list(pool.map(read, sources))
    child_ref = sources[0].ref
    return [
        tensor_stats(samples[0][t.name], [s[t.name] for s in samples[1:]], _child_dtype(t.metas[child_ref].dtype), device=dev)
        for t in plan.tensors
    ]


def _full_stats(sources: list[WeightSource], plan: SamplePlan, dev: torch.device, progress: Progress | None) -> list[TensorStats]:
    """Stream every element (chunks on ``dev``), accumulating the additive statistics per tensor.

    Whole small tensors of one size (a MoE's experts) are gathered into batches of up to
    ``FULL_BATCH`` and computed together; larger tensors arrive in chunks and are summed.
    """
    child_ref = sources[0].ref
    refs = [s.ref for s in sources]
    acc: dict[str, TensorStats] = {}
    total = sum(t.n_elements for t in plan.tensors)
    done = 0
    metas = plan.by_name()
    batch: list = []

    def add(name: str, part: TensorStats) -> None:
        acc[name] = acc[name] + part if name in acc else part

    def flush() -> None:
        if batch:
            dtype = _child_dtype(metas[batch[0].name].metas[child_ref].dtype)
            parts = streamed_stats_batch([c.values[refs[0]] for c in batch], [[c.values[r] for r in refs[1:]] for c in batch],
                                         dtype, device=dev)
            for c, part in zip(batch, parts):
                add(c.name, part)
            batch.clear()

    for chunk in iter_full(sources, plan, device=dev):
        n = chunk.stop - chunk.start
        dtype = metas[chunk.name].metas[child_ref].dtype
        whole = chunk.start == 0 and chunk.last and n <= FULL_BATCH_MAX_ELEMENTS
        key = (n, dtype)
        if batch and (not whole or key != (batch[0].stop - batch[0].start, metas[batch[0].name].metas[child_ref].dtype)
                      or len(batch) >= FULL_BATCH):
            flush()
        if whole:
            batch.append(chunk)
        else:
            add(chunk.name, streamed_stats(chunk.values[refs[0]], [chunk.values[r] for r in refs[1:]],
                                           _child_dtype(dtype), device=dev))
        done += n
        if progress:
            progress(done, total, chunk.name)
    flush()
    return [acc[t.name] for t in plan.tensors]


def _maybe_passthrough(lin: Lineage, child_layers: int, parent_layers: dict[str, int]) -> bool:
    """Worth matching layers: layer counts differ, or some but not all tensors are exact copies."""
    if child_layers and any(n != child_layers for n in parent_layers.values()):
        return True
    mats = lin.matrix_idx()
    if not mats:
        return False
    copied = np.stack([lin.stats[t].eq / max(lin.stats[t].n, 1) >= COPY_EQUAL_SHARE for t in mats])
    share = copied.mean(axis=0)
    return bool(np.any(copied.any(axis=1)) and np.all(share < 0.95) and copied.any(axis=1).mean() > 0.5)


def _layer_matches(sources: list[WeightSource], models: dict, dev: torch.device):  # noqa: ANN001
    plans = layer_plans(models)
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        got = list(pool.map(lambda s: read_sample(s, plans[s.ref], device="cpu"), sources))
    if not got[0]:
        raise ShapeMismatchError(f"{sources[0].ref} has no per-layer tensors to match")
    return match_layers(got[0], {s.ref: g for s, g in zip(sources[1:], got[1:])})
