"""Reading planned samples (and whole tensors, for ``--full``) as float32, dequantising on the way.

Quantized weights are decoded to float32 before any comparison:

* ``F8_E4M3`` / ``F8_E5M2``: the fp8 value, times its scale companion when there is one;
* ``I8`` with a ``weight_scale`` companion: the integer times the scale.

A scale is per tensor (one element), per row (``(rows,)`` or ``(rows, 1)``) or per block
(``(ceil(R/br), ceil(C/bc))``, e.g. 128x128 blocks); ``*_scale`` and ``*_scale_inv`` are both
multiplied, as their producers (compressed-tensors, DeepSeek-style fp8) define them. Only the scale
elements covering the sampled rows are read.

>>> from detectors.weights.sources import open_source            # doctest: +SKIP
>>> sources = [open_source("child"), open_source("parent")]      # doctest: +SKIP
>>> plan = plan_sample(canonical_models(sources), 4 * 2**20)     # doctest: +SKIP
>>> samples = read_samples(sources, plan)                        # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from detectors.errors import WeightFormatError
from detectors.weights.keys import canonical_tensors
from detectors.weights.safetensors_format import TensorMeta, decode
from detectors.weights.sampling import SamplePlan, TensorPlan
from detectors.weights.sources import ByteRange, WeightSource

#: Full reads stream each tensor in chunks of at most this many elements (256 MiB as float32).
FULL_CHUNK_ELEMENTS = 64 * 2**20
#: Chunks (of any size) a full read keeps in flight ahead of the consumer.
FULL_READ_AHEAD = 64
# Dequantisation builds index arrays; doing it in blocks bounds their memory.
_DEQUANT_BLOCK = 4 * 2**20


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> CUDA when available, else CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def canonical_models(sources: Sequence[WeightSource]) -> dict[str, dict[str, TensorMeta]]:
    """``{source.ref: {canonical name: TensorMeta}}``: the input :func:`plan_sample` expects."""
    return {s.ref: canonical_tensors(s.tensors(), s.ref) for s in sources}


@dataclass(frozen=True)
class _Job:
    """Reads for one element range [a, b) of one tensor of one model."""

    meta: TensorMeta
    scale: TensorMeta | None
    a: int
    b: int

    def byte_ranges(self) -> list[ByteRange]:
        m, isz = self.meta, self.meta.itemsize
        out = [(m.file, m.start + self.a * isz, m.start + self.b * isz)]
        if self.scale is not None:
            s0, s1 = scale_window(m.shape, self.scale.shape, self.a, self.b)
            out.append((self.scale.file, self.scale.start + s0 * self.scale.itemsize, self.scale.start + s1 * self.scale.itemsize))
        return out

    def values(self, blobs: list[bytes]) -> torch.Tensor:
        x = decode(blobs[0], self.meta.dtype)
        if self.scale is not None:
            x = dequantize(x, self.meta.shape, self.scale.shape, decode(blobs[1], self.scale.dtype), self.a)
        return x


def scale_window(shape: tuple[int, ...], scale_shape: tuple[int, ...], a: int, b: int) -> tuple[int, int]:
    """Flat element range of the scale tensor covering weight elements ``[a, b)``.

    >>> scale_window((4, 8), (4, 1), 9, 20)   # rows 1..2 of a per-row scale
    (1, 3)
    """
    if math.prod(scale_shape) == 1:
        return 0, 1
    rows, cols = shape[0], math.prod(shape[1:])
    srows, scols = scale_shape[0], math.prod(scale_shape[1:])
    br = math.ceil(rows / srows)
    r0, r1 = a // cols, (b - 1) // cols
    return (r0 // br) * scols, (r1 // br + 1) * scols


def dequantize(
    x: torch.Tensor, shape: tuple[int, ...], scale_shape: tuple[int, ...], scale: torch.Tensor, a: int
) -> torch.Tensor:
    """Multiply the flat weight elements ``x`` (starting at flat index ``a``) by their scales.

    ``scale`` holds the window given by :func:`scale_window` for this range.

    >>> dequantize(torch.ones(4), (2, 2), (2, 1), torch.tensor([2.0, 3.0]), 0)
    tensor([2., 2., 3., 3.])
    """
    if math.prod(scale_shape) == 1:
        return x * scale.reshape(())
    rows, cols = shape[0], math.prod(shape[1:])
    srows, scols = scale_shape[0], math.prod(scale_shape[1:])
    br, bc = math.ceil(rows / srows), math.ceil(cols / scols)
    first_srow = (a // cols) // br
    s = scale.reshape(-1, scols)
    out = torch.empty_like(x)
    for lo in range(0, x.numel(), _DEQUANT_BLOCK):
        hi = min(x.numel(), lo + _DEQUANT_BLOCK)
        pos = torch.arange(a + lo, a + hi, dtype=torch.int64)
        out[lo:hi] = x[lo:hi] * s[pos // cols // br - first_srow, (pos % cols) // bc]
    return out


def _jobs(source_ref: str, t: TensorPlan, ranges: Sequence[tuple[int, int]]) -> list[_Job]:
    return [_Job(t.metas[source_ref], t.scales.get(source_ref), a, b) for a, b in ranges]


def _check_ref(source: WeightSource, plan: SamplePlan) -> None:
    if source.ref not in plan.refs:
        raise ValueError(f"{source.ref} is not one of the models this plan was made for ({', '.join(plan.refs)})")


def _run(source: WeightSource, jobs: list[_Job], gap_bytes: int = 0) -> list[torch.Tensor]:
    reads: list[ByteRange] = []
    spans = []
    for j in jobs:
        rs = j.byte_ranges()
        spans.append((len(reads), len(rs)))
        reads.extend(rs)
    blobs = source.read_ranges(reads, gap_bytes=gap_bytes)
    out = []
    for j, (i, n) in zip(jobs, spans):
        try:
            out.append(j.values(blobs[i : i + n]))
        except WeightFormatError as exc:
            raise WeightFormatError(f"{source.ref}/{j.meta.file}: tensor {j.meta.name!r}: {exc}") from None
    return out


def read_sample(
    source: WeightSource, plan: SamplePlan, device: str | torch.device | None = "cpu"
) -> dict[str, torch.Tensor]:
    """Read the planned elements of every tensor from ``source`` (one batch of concurrent reads).

    Returns ``{canonical name: 1-D float32 tensor}``, the runs of each tensor concatenated in
    position order, dequantised when the file is quantized: every tensor of ``plan.tensors``, plus
    the ``plan.extra`` layer tensors this model holds. Samples are small, so they stay on the CPU
    unless ``device`` says otherwise ('auto' picks CUDA when present).
    """
    _check_ref(source, plan)
    dev = resolve_device(device)
    jobs: list[_Job] = []
    owners: list[str] = []
    mine = [t for t in plan.tensors + plan.extra if source.ref in t.metas]
    for t in mine:
        js = _jobs(source.ref, t, t.ranges)
        jobs.extend(js)
        owners.extend([t.name] * len(js))
    # The budget the sample left unused (at least plan.gap_share of it) bridges gaps between
    # ranges: fewer requests, and still no more than budget_bytes of data per model.
    slack = 0 if plan.budget_bytes is None else max(0, plan.budget_bytes - plan.planned_bytes(source.ref))
    values = _run(source, jobs, gap_bytes=slack)
    parts: dict[str, list[torch.Tensor]] = {t.name: [] for t in mine}
    for name, v in zip(owners, values):
        parts[name].append(v)
    return {name: (torch.cat(vs) if len(vs) > 1 else vs[0]).to(dev) for name, vs in parts.items()}


def read_samples(
    sources: Sequence[WeightSource], plan: SamplePlan, device: str | torch.device | None = "cpu"
) -> dict[str, dict[str, torch.Tensor]]:
    """:func:`read_sample` for several models at once (concurrently): ``{ref: {name: values}}``."""
    with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
        got = list(pool.map(lambda s: read_sample(s, plan, device), sources))
    return {s.ref: g for s, g in zip(sources, got)}


@dataclass(frozen=True)
class FullChunk:
    """Elements ``[start, stop)`` (flat, in the plan's common shape) of tensor ``name``, per model."""

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]
    values: dict[str, torch.Tensor]
    last: bool  # True on the tensor's final chunk: a fit can close the tensor's statistics


def iter_full(
    sources: Sequence[WeightSource],
    plan: SamplePlan,
    chunk_elements: int = FULL_CHUNK_ELEMENTS,
    device: str | torch.device | None = "auto",
    include_extra: bool = False,
    read_ahead: int = FULL_READ_AHEAD,
) -> Iterator[FullChunk]:
    """Stream every planned element of every model, tensor by tensor, in bounded chunks.

    With a ``full=True`` plan that is every common tensor whole; with ``include_extra`` also the
    ``extra`` layer tensors, whose chunks hold only the models that have them. Chunks are yielded in
    plan order as float32 on ``device`` (CUDA when present by default). Reads run ahead of the
    consumer: up to ``read_ahead`` chunks are in flight (every model concurrently), but never more
    than ``chunk_elements`` elements per model beyond the chunk being consumed, so a checkpoint of
    tens of thousands of small tensors is not read one round trip at a time while memory stays
    bounded by about two chunks per model.
    """
    for s in sources:
        _check_ref(s, plan)
    dev = resolve_device(device)
    if chunk_elements < 1:
        raise ValueError("chunk_elements must be positive")
    specs = [
        (t, lo, min(b, lo + chunk_elements), t.ranges[-1][1])
        for t in plan.tensors + (plan.extra if include_extra else [])
        for a, b in t.ranges
        for lo in range(a, b, chunk_elements)
    ]
    workers = max(1, len(sources)) * max(1, min(read_ahead, 16))
    pending: deque[tuple[TensorPlan, int, int, int, dict[str, Future[torch.Tensor]]]] = deque()
    inflight = 0
    nxt = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while nxt < len(specs) or pending:
            while nxt < len(specs) and len(pending) < read_ahead:
                t, lo, hi, end = specs[nxt]
                if pending and inflight + (hi - lo) > chunk_elements:
                    break
                holders = [s for s in sources if s.ref in t.metas]
                futs = {s.ref: pool.submit(lambda s=s, t=t, lo=lo, hi=hi: _run(s, _jobs(s.ref, t, [(lo, hi)]))[0]) for s in holders}
                pending.append((t, lo, hi, end, futs))
                inflight += hi - lo
                nxt += 1
            t, lo, hi, end, futs = pending.popleft()
            inflight -= hi - lo
            values = {ref: f.result().to(dev) for ref, f in futs.items()}
            yield FullChunk(t.name, lo, hi, t.shape, values, last=hi == end)
