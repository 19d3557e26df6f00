"""Scale fits gathered during a full read, while each quantized child matrix passes through memory.

A full read hands over packed weights of the child whole, in one batch with the candidates' same
tensors (:func:`~provbot.detectors.weights.reader.iter_full_batches`); fp8/int8 weights over 16M elements
come in chunks, whose grid rows are gathered until the last one. There, :class:`RescaleCollector`
fits each matrix the child stores quantized on every candidate's
(:func:`~provbot.detectors.weights.scale_fit.fit_scales`, on the grid) and keeps the few numbers and
per-channel vectors the rescaled-copy test needs, and the grid of every 1-D tensor (norms) of
every model, against which the fitted scales are checked. Nothing else is kept of the matrices.

>>> collector = RescaleCollector(["child", "a", "b"], keep_below=0.25)   # doctest: +SKIP
>>> for batch in iter_full_batches(sources, plan):                      # doctest: +SKIP
...     collector.add(batch)
>>> fits = collector.result()                                           # doctest: +SKIP
>>> fits.fits["layers.0.self_attn.q_proj.weight"][0].rss                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from provbot.detectors.weights.reader import FullBatch
from provbot.detectors.weights.scale_fit import ScaleFit, fit_scales, grid, grid_stride


@dataclass
class RescaleStats:
    """What :class:`RescaleCollector` kept: ``fits[name][j]`` is the child's matrix ``name`` fitted
    on candidate ``j``; ``vectors[name]`` the grid of 1-D tensor ``name``, one row per model
    (child first)."""

    fits: dict[str, list[ScaleFit]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


class RescaleCollector:
    """Scale fits of a full read's matrices that the child stores decoded (packed, fp8, int8).

    ``refs``: the child first, then the candidates (as the batches hold them). ``keep_below``:
    a fit whose rescaled relative residual is above this keeps only its numbers, not its vectors:
    the residual after checking the scales can only be larger, so such a candidate cannot pass the
    test, and a big MoE would otherwise keep vectors for every expert and candidate.
    """

    def __init__(self, refs: Sequence[str], keep_below: float) -> None:
        self.refs = list(refs)
        self.keep_below = keep_below
        self._stats = RescaleStats()
        self._parts: dict[str, _GridParts] = {}  # matrices arriving in chunks, by name

    def add(self, batch: FullBatch) -> None:
        """Fit the batch's decoded child matrices (a chunked one at its last chunk); keep the grid
        of its 1-D tensors."""
        child = self.refs[0]
        for i, t in enumerate(batch.tensors):
            if batch.start == 0 and batch.last and t.whole:
                self.add_tensor(t.name, [batch.values[r][i].view(t.shape) for r in self.refs], t.decoded_in(child))
            elif len(t.shape) == 2 and t.decoded_in(child):
                parts = self._parts.setdefault(t.name, _GridParts(t.shape, len(self.refs), batch.values[child].device))
                parts.add(batch.start, [batch.values[r][i] for r in self.refs])
                if batch.last:
                    self._fit(t.name, list(self._parts.pop(t.name).grids))

    def add_tensor(self, name: str, values: Sequence[torch.Tensor], decoded: bool = True) -> None:
        """One whole tensor, per model (child first): a 1-D tensor's grid is kept; a matrix the
        child stores ``decoded`` (quantized) is fitted on each candidate's."""
        if values[0].dim() == 1:
            self._stats.vectors[name] = np.stack([grid(v).cpu().numpy() for v in values])
        elif values[0].dim() == 2 and decoded:
            self._fit(name, [grid(v) for v in values])

    def _fit(self, name: str, grids: list[torch.Tensor]) -> None:
        fits = [fit_scales(grids[0], g) for g in grids[1:]]
        self._stats.fits[name] = [f if f.rel(f.rss) <= self.keep_below else f.scalars() for f in fits]

    def result(self) -> RescaleStats:
        return self._stats


class _GridParts:
    """The :func:`~provbot.detectors.weights.scale_fit.grid` of a matrix that arrives in flat chunks
    (rows cut anywhere), filled in chunk by chunk for every model: 1/16 or less of a big matrix."""

    def __init__(self, shape: tuple[int, ...], models: int, device: torch.device) -> None:
        self.rows, self.cols = shape
        self.sr, self.sc = grid_stride(self.rows), grid_stride(self.cols)
        self.grids = torch.zeros((models, -(-self.rows // self.sr), -(-self.cols // self.sc)), device=device)

    def add(self, start: int, chunks: Sequence[torch.Tensor]) -> None:
        """Elements ``[start, start + len)`` of the flattened matrix, one chunk per model."""
        cols, stop = self.cols, start + chunks[0].numel()
        full_lo, full_hi = -(-start // cols), stop // cols  # rows wholly inside the chunk
        for m, x in enumerate(chunks):
            if full_hi > full_lo:
                g0 = -(-full_lo // self.sr)
                block = x[full_lo * cols - start : full_hi * cols - start].view(full_hi - full_lo, cols)
                picked = block[g0 * self.sr - full_lo :: self.sr, :: self.sc]
                self.grids[m, g0 : g0 + picked.shape[0]] = picked.to(torch.float32)
            for row in {start // cols, (stop - 1) // cols} - set(range(full_lo, full_hi)):
                if row % self.sr == 0:  # a cut grid row: its part in this chunk
                    lo, hi = max(start, row * cols), min(stop, (row + 1) * cols)
                    j0, j1 = -(-(lo - row * cols) // self.sc), -(-(hi - row * cols) // self.sc)
                    first = row * cols + j0 * self.sc - start
                    self.grids[m, row // self.sr, j0:j1] = x[first : hi - start : self.sc].to(torch.float32)
