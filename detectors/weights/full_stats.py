"""Full-mode statistics: every element of every model, streamed in batches, summed per tensor.

:func:`~provbot.detectors.weights.reader.iter_full_batches` yields, in file order, batches of whole
tensors of one size (a MoE's experts) and chunks of big tensors. A checkpoint also has, in every
layer, a handful of small tensors of other sizes (norms, router, attention projections): read one
layer at a time they arrive as tiny batches, each paying the fixed cost of a statistics call.
:class:`FullStatsAccumulator` therefore holds small batches back, pooled by size across layers,
and computes a pool when it is big enough (or at the end): every layer's ``q_norm`` in one call.

>>> acc = FullStatsAccumulator(["child", "a", "b"])          # doctest: +SKIP
>>> for batch in iter_full_batches(sources, plan):          # doctest: +SKIP
...     acc.add(batch)
>>> table = acc.finish(names)                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from provbot.detectors.weights.buffers import aligned_buffer
from provbot.detectors.weights.fit import FULL_SPARSE_STRIDE, BatchSums, StatsTable, batch_sums, storage_dtype
from provbot.detectors.weights.reader import FullBatch, iter_full_batches
from provbot.detectors.weights.rescale_stats import RescaleCollector
from provbot.detectors.weights.sampling import SamplePlan
from provbot.detectors.weights.sources import WeightSource

#: Batches of fewer elements per model than this are pooled with others of their size.
POOL_BELOW_ELEMENTS = 2**20
#: A pool is computed once it holds this many elements per model.
POOL_ELEMENTS = 4 * 2**20
#: Full reads of at least this many elements per model compile the CPU kernels (seconds, once).
COMPILE_MIN_ELEMENTS = 2**28

Progress = Callable[[int, int, str], None]


#: Small whole batches pool by (elements, storage dtype, the models' value dtypes).
_PoolKey = tuple[int, "torch.dtype | None", tuple["torch.dtype", ...]]


@dataclass
class _Pool:
    names: list[str] = field(default_factory=list)
    values: list[list[torch.Tensor]] = field(default_factory=list)  # per batch, per model
    elements: int = 0


class FullStatsAccumulator:
    """Per-tensor statistics of streamed :class:`~provbot.detectors.weights.reader.FullBatch` es.

    ``refs``: the child first, then the candidates (every batch must hold all of them).
    ``compiled``: run the statistics through the ``torch.compile``'d CPU kernels.
    """

    def __init__(self, refs: Sequence[str], device: torch.device | None = None, compiled: bool = False) -> None:
        self.refs = list(refs)
        self.device = device
        self.compiled = compiled
        # Per computed batch its tensor names and sums, joined into one table in finish().
        self._names: list[str] = []
        self._sums: list[BatchSums] = []
        self._pools: dict[_PoolKey, _Pool] = {}
        # Pools are joined into buffers kept for the next pool: fresh ones would be page-faulted
        # in every time, which cost more than the join itself.
        self._scratch: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def add(self, batch: FullBatch) -> None:
        """Take one batch: computed now, or pooled with others of its size when it is small."""
        dtype = storage_dtype(batch.tensors[0].metas[self.refs[0]].dtype)
        m = batch.stop - batch.start
        whole = batch.start == 0 and batch.last
        if whole and batch.elements < POOL_BELOW_ELEMENTS:
            key = (m, dtype, tuple(batch.values[r].dtype for r in self.refs))
            pool = self._pools.setdefault(key, _Pool())
            pool.names += batch.names
            # Views: a small batch is its own read (one span of just these tensors), so holding
            # it keeps no more memory alive than a copy would, and saves the copy.
            pool.values.append([batch.values[r] for r in self.refs])
            pool.elements += batch.elements
            if pool.elements >= POOL_ELEMENTS:
                self._flush(key)
            return
        self._compute(batch.names, [batch.values[r] for r in self.refs], dtype)

    def finish(self, names: Sequence[str]) -> StatsTable:
        """Compute what is still pooled; return the statistics of ``names``, one row each, in that order.

        Raises ``KeyError`` for a name no batch held, and for a held tensor not in ``names``.
        """
        for key in list(self._pools):
            self._flush(key)
        if not self._sums:
            if names:
                raise KeyError(names[0])
            return StatsTable.empty(len(self.refs) - 1)
        sums = BatchSums.cat(self._sums, self._names, names)
        self._names, self._sums = [], []
        return sums.table()

    def _flush(self, key: _PoolKey) -> None:
        pool = self._pools.pop(key)
        rows = [self._join(i, [v[i] for v in pool.values]) for i in range(len(self.refs))]
        self._compute(pool.names, rows, key[1])

    def _join(self, model: int, parts: list[torch.Tensor]) -> torch.Tensor:
        """``torch.cat(parts)`` into this model's reusable buffer (grown when too small)."""
        rows, width = sum(p.shape[0] for p in parts), parts[0].shape[1]
        key = (model, parts[0].dtype)
        buf = self._scratch.get(key)
        if buf is None or buf.numel() < rows * width:
            numel = max(rows * width, POOL_ELEMENTS + POOL_BELOW_ELEMENTS)
            # Huge-page backed where the system allows (see buffers): fewer faults on first use.
            raw = aligned_buffer(numel * parts[0].element_size())
            buf = self._scratch[key] = torch.frombuffer(raw, dtype=parts[0].dtype)
        out = buf[: rows * width].view(rows, width)
        return torch.cat(parts, out=out)

    def _compute(self, names: list[str], rows: list[torch.Tensor], dtype: torch.dtype | None) -> None:
        self._sums.append(
            batch_sums(rows[0], rows[1:], dtype, device=self.device, stride=FULL_SPARSE_STRIDE, compiled=self.compiled)
        )
        self._names += names


def full_stats(
    sources: list[WeightSource],
    plan: SamplePlan,
    device: torch.device,
    progress: Progress | None = None,
    compile_kernels: str = "auto",
    rescale: RescaleCollector | None = None,
) -> StatsTable:
    """Stream every element of every model (batches on ``device``); statistics per plan tensor.

    ``compile_kernels``: auto (compile the CPU kernels for reads of ``COMPILE_MIN_ELEMENTS``+
    elements per model), always, or never. ``rescale`` also sees every batch, for the per-channel
    scale fits of the child's quantized matrices (see :mod:`~provbot.detectors.weights.rescale_stats`).
    """
    total = sum(t.n_elements for t in plan.tensors)
    compiled = compile_kernels == "always" or (compile_kernels == "auto" and total >= COMPILE_MIN_ELEMENTS)
    acc = FullStatsAccumulator([s.ref for s in sources], device=device, compiled=compiled)
    done = 0
    for batch in iter_full_batches(sources, plan, device=device):
        if rescale is not None:
            rescale.add(batch)
        acc.add(batch)
        done += batch.elements
        if progress:
            progress(done, total, batch.tensors[-1].name)
    return acc.finish([t.name for t in plan.tensors])
