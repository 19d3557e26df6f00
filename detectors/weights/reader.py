"""Reading planned samples (and whole tensors, for ``--full``) as float32, dequantising on the way.

Quantized weights are decoded to float32 before any comparison:

* ``F8_E4M3`` / ``F8_E5M2``: the fp8 value, times its scale companion when there is one;
* ``I8`` with a ``weight_scale`` companion: the integer times the scale;
* packed integers (GPTQ, AWQ, compressed-tensors, bitsandbytes 4-bit; a :class:`~provbot.detectors.weights.packed.PackedMeta`
  in the plan): every part read whole and decoded (:func:`provbot.detectors.weights.packed.decode`), then
  the planned elements taken. Full reads take such a weight in one batch, never in chunks.

A scale is per tensor (one element), per row (``(rows,)`` or ``(rows, 1)``) or per block
(``(ceil(R/br), ceil(C/bc))``, e.g. 128x128 blocks); ``*_scale`` and ``*_scale_inv`` are both
multiplied, as their producers (compressed-tensors, DeepSeek-style fp8) define them. Only the scale
elements covering the sampled rows are read.

>>> from provbot.detectors.weights.opening import open_source            # doctest: +SKIP
>>> sources = [open_source("child"), open_source("parent")]      # doctest: +SKIP
>>> plan = plan_sample(canonical_models(sources), 4 * 2**20)     # doctest: +SKIP
>>> samples = read_samples(sources, plan)                        # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.buffers import Buffer, join
from provbot.detectors.weights.byte_ranges import ByteRange
from provbot.detectors.weights.keys import canonical_tensors
from provbot.detectors.weights.packed import PackedMeta
from provbot.detectors.weights.packed import decode as decode_packed
from provbot.detectors.weights.safetensors_format import TensorMeta, decode, view
from provbot.detectors.weights.sampling import SamplePlan, TensorPlan, stored
from provbot.detectors.weights.sources import WeightSource

#: Full reads stream big tensors in chunks of at most this many elements (32 MiB as bf16).
FULL_CHUNK_ELEMENTS = 16 * 2**20
#: Whole small tensors of one size are read and fitted together, this many elements per model at most.
FULL_BATCH_ELEMENTS = 48 * 2**20
#: Elements per model a full read keeps in flight ahead of the consumer.
FULL_READ_AHEAD_ELEMENTS = 2 * FULL_BATCH_ELEMENTS
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

    meta: TensorMeta | PackedMeta
    scale: TensorMeta | None
    a: int
    b: int

    def byte_ranges(self) -> list[ByteRange]:
        if isinstance(self.meta, PackedMeta):  # every part whole: the layouts are transposed or grouped
            return [(p.file, p.start, p.end) for p in self.meta.parts.values()]
        m, isz = self.meta, self.meta.itemsize
        out = [(m.file, m.start + self.a * isz, m.start + self.b * isz)]
        if self.scale is not None:
            s0, s1 = scale_window(m.shape, self.scale.shape, self.a, self.b)
            out.append(
                (
                    self.scale.file,
                    self.scale.start + s0 * self.scale.itemsize,
                    self.scale.start + s1 * self.scale.itemsize,
                )
            )
        return out

    def values(self, blobs: list[Buffer]) -> torch.Tensor:
        if isinstance(self.meta, PackedMeta):
            w = decode_packed(self.meta, dict(zip(self.meta.parts, blobs)))
            return w.reshape(-1)[self.a : self.b]
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
    scale = t.scales.get(source_ref)
    return [_Job(t.metas[source_ref], None if scale is None else stored(scale), a, b) for a, b in ranges]


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
class _BatchSpec:
    """What a batch covers: elements ``[start, stop)`` of each of ``tensors``."""

    tensors: tuple[TensorPlan, ...]
    start: int
    stop: int
    last: bool  # True on a tensor's final batch: a fit can close the tensors' statistics

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    @property
    def elements(self) -> int:
        return len(self.tensors) * (self.stop - self.start)


@dataclass(frozen=True)
class FullBatch(_BatchSpec):
    """Elements ``[start, stop)`` (flat, in the plan's common shape) of each of ``tensors``, per model.

    ``values[ref]`` is ``(len(tensors), stop - start)`` in that model's storage dtype (bf16 stays
    bf16; fp8/int8 with a scale companion arrives dequantised as float32). Many small tensors of one
    size share a batch; a big tensor arrives alone, in several batches.
    """

    values: dict[str, torch.Tensor] = field(default_factory=dict)


def _batch_specs(
    plan: SamplePlan, include_extra: bool, chunk_elements: int, batch_elements: int, file_order: bool
) -> list[_BatchSpec]:
    """Group whole tensors of one size, dtypes and holders into batches; cut big ones into chunks.

    ``file_order``: walk the tensors in the order of the first model's files, so that a batch is
    one contiguous byte span (one request) in every model saved with the same layout.
    """
    tensors = plan.tensors + (plan.extra if include_extra else [])
    if file_order:
        first = {t.name: next(t.metas[r] for r in plan.refs if r in t.metas) for t in tensors}
        tensors = sorted(tensors, key=lambda t: (first[t.name].file, first[t.name].start))
    specs: list[_BatchSpec] = []
    group: list[TensorPlan] = []

    def signature(t: TensorPlan) -> tuple[object, ...]:
        return t.n_elements, tuple((r, m.dtype) for r, m in t.metas.items())

    def flush() -> None:
        if group:
            specs.append(_BatchSpec(tuple(group), 0, group[0].n_elements, True))
            group.clear()

    for t in tensors:
        n = t.n_elements
        if t.whole and not t.decoded and 0 < n <= batch_elements // 2:
            if group and (signature(group[0]) != signature(t) or (len(group) + 1) * n > batch_elements):
                flush()
            group.append(t)
            continue
        flush()
        end = t.ranges[-1][1] if t.ranges else 0
        for a, b in t.ranges:
            step = b - a if t.packed else chunk_elements  # a packed weight decodes whole, once
            for lo in range(a, b, step):
                hi = min(b, lo + step)
                specs.append(_BatchSpec((t,), lo, hi, hi == end))
    flush()
    return specs


def _read_batch(source: WeightSource, spec: _BatchSpec) -> torch.Tensor:
    """One model's ``(T, stop - start)`` values of a batch: one range request when contiguous."""
    ts, a, b = spec.tensors, spec.start, spec.stop
    if any(t.decoded_in(source.ref) for t in ts):  # quantized: decoded per tensor to float32
        return torch.stack(_run(source, [j for t in ts for j in _jobs(source.ref, t, [(a, b)])]))
    metas = [stored(t.metas[source.ref]) for t in ts]
    isz = metas[0].itemsize
    ranges = [(m.file, m.start + a * isz, m.start + b * isz) for m in metas]
    if all(r[0] == q[0] and r[1] == q[2] for q, r in zip(ranges, ranges[1:])):
        blob: Buffer = source.read_ranges([(ranges[0][0], ranges[0][1], ranges[-1][2])])[0]
    else:  # another layout than the first model's: gather (the bytes still arrive merged by span)
        blob = join(source.read_ranges(ranges))
    try:
        return view(blob, metas[0].dtype).view(len(ts), b - a)
    except WeightFormatError as exc:
        raise WeightFormatError(f"{source.ref}/{metas[0].file}: tensor {metas[0].name!r}: {exc}") from None


def iter_full_batches(
    sources: Sequence[WeightSource],
    plan: SamplePlan,
    chunk_elements: int = FULL_CHUNK_ELEMENTS,
    batch_elements: int = FULL_BATCH_ELEMENTS,
    device: str | torch.device | None = "auto",
    include_extra: bool = False,
    read_ahead_elements: int = FULL_READ_AHEAD_ELEMENTS,
    file_order: bool = True,
) -> Iterator[FullBatch]:
    """Stream every planned element of every model in batches (see :class:`FullBatch`).

    Whole tensors of one size (a MoE's experts) are batched up to ``batch_elements`` per model;
    bigger tensors arrive in chunks of ``chunk_elements``. In ``file_order`` (the default) a batch
    is one contiguous byte span of each model's file: a checkpoint of 18,000 tensors is read in a
    few hundred range requests rather than one per tensor. Reads run ahead of the consumer, every
    model concurrently, up to ``read_ahead_elements`` per model beyond the batch being consumed,
    so memory stays bounded. ``include_extra`` also streams the plan's ``extra`` layer tensors,
    whose batches hold only the models that have them.
    """
    for s in sources:
        _check_ref(s, plan)
    if chunk_elements < 1 or batch_elements < 1:
        raise ValueError("chunk_elements and batch_elements must be positive")
    dev = resolve_device(device)
    specs = _batch_specs(plan, include_extra, chunk_elements, batch_elements, file_order)
    pending: deque[tuple[_BatchSpec, dict[str, Future[torch.Tensor]]]] = deque()
    inflight = 0
    nxt = 0
    with ThreadPoolExecutor(max_workers=max(1, len(sources)) * 4) as pool:
        while nxt < len(specs) or pending:
            while nxt < len(specs):
                spec = specs[nxt]
                if pending and inflight + spec.elements > read_ahead_elements:
                    break
                holders = [s for s in sources if s.ref in spec.tensors[0].metas]
                pending.append((spec, {s.ref: pool.submit(_read_batch, s, spec) for s in holders}))
                inflight += spec.elements
                nxt += 1
            spec, futs = pending.popleft()
            inflight -= spec.elements
            values = {ref: f.result().to(dev) for ref, f in futs.items()}
            yield FullBatch(spec.tensors, spec.start, spec.stop, spec.last, values)


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
) -> Iterator[FullChunk]:
    """:func:`iter_full_batches` one tensor chunk at a time, as float32, in plan order.

    At most ``chunk_elements`` elements per chunk, and per model about two chunks' worth in flight
    beyond the one being consumed.
    """
    for batch in iter_full_batches(
        sources,
        plan,
        chunk_elements,
        chunk_elements,
        device,
        include_extra,
        read_ahead_elements=2 * chunk_elements,
        file_order=False,
    ):
        for i, t in enumerate(batch.tensors):
            values = {ref: v[i].to(torch.float32) for ref, v in batch.values.items()}
            yield FullChunk(t.name, batch.start, batch.stop, t.shape, values, batch.last)
