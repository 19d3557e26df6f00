"""Which tensors, and which elements of them, a scan reads from every model.

Two rules make the samples comparable:

* Element positions are a function of the tensor's (common) shape only, never of its name or of
  the model: every model, and every layer with that shape, is sampled at the same flat positions.
  The candidate index reuses :func:`element_ranges` for its weight sketches.
* All tensors of one shape get the same number of elements (one global per-tensor share, capped at
  the tensor's size), so the positions really are identical across layers.

Tight budgets on big checkpoints relax the first rule: the plan is thinned to *seams* (see
:func:`_seams`), where runs sit at tensor edges (:func:`edge_ranges`) so that file neighbours are
read in one request. Positions there are still the same in every model, which is what the fit
needs; passthrough layer matching reads its own plan (``layers.layer_plans``).

>>> element_ranges((4, 8), 32)
[(0, 32)]
>>> element_ranges((1000, 1000), 10000) == element_ranges((1000, 1000), 10000)
True
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations, compress
from operator import attrgetter
from typing import cast

import numpy as np

from provbot.detectors.errors import ShapeMismatchError
from provbot.detectors.weights.byte_ranges import merge_ranges
from provbot.detectors.weights.keys import (
    TensorKind,
    align_tied_heads,
    classify,
    classify_many,
    is_scale_companion,
    kind_columns,
    layer_template,
    scale_companion,
)
from provbot.detectors.weights.packed import PackedMeta
from provbot.detectors.weights.safetensors_format import DTYPES, FLOAT_DTYPES, TensorMeta

#: A tensor as plans hold it: stored as it is, or a packed weight decoded whole (see packed/).
Meta = TensorMeta | PackedMeta


def stored(m: Meta) -> TensorMeta:
    """``m`` as a stored tensor, for code that reads windows of raw values: packed weights never get
    there (a plan reads them whole or not at all), so one arriving is a bug, not bad input."""
    assert isinstance(m, TensorMeta), f"{m.name}: a packed weight cannot be read in windows"
    return m


#: Runs shorter than this are not worth a request of their own: small samples are one contiguous run.
MIN_RUN = 4096
#: At most this many runs per tensor (each run is one HTTP range request per model).
MAX_RUNS = 8
#: Most routed experts sampled per MoE layer; fewer when the budget is tight.
MAX_EXPERTS_PER_LAYER = 8
#: Below this many elements per tensor, a lower expert count is preferred, then fewer tensors per layer.
TARGET_ELEMENTS = 2048
#: Plans of more tensors than this are thinned to seams per layer when the budget is tight (see _seams).
THIN_ABOVE_TENSORS = 256
#: Range requests per model that a plan thinned to seams for a tight budget aims at: one seam per
#: layer in deep models (never fewer), several in shallow ones. The Hub counts every resolve call
#: against a rate limit (5,000 per 5 minutes for a free account), and each costs a round trip and
#: CPU on both ends.
SEAM_REQUESTS = 48
#: Default ceiling on a sampled plan's range requests per model, whatever the budget: a roomy
#: budget then buys more elements per request, not more requests (see plan_sample).
MAX_REQUESTS = 256
#: Share of the budget kept for bridging gaps between nearby ranges (fewer HTTP requests).
GAP_SHARE = 0.2

_QUANT_DTYPES = {"F8_E4M3", "F8_E5M2", "I8"}
_PLAIN_FLOAT = FLOAT_DTYPES - _QUANT_DTYPES


def element_ranges(
    shape: tuple[int, ...] | list[int], n_elements: int, max_runs: int = MAX_RUNS
) -> list[tuple[int, int]]:
    """Choose ``n_elements`` flat (row-major) positions of a tensor of ``shape`` as contiguous runs.

    Deterministic in ``(shape, n_elements, max_runs)`` only. The flat range is cut into equal strata
    (one run each, at most ``max_runs`` and ``MAX_RUNS``, so a sample spans the whole tensor) and
    each run starts at a pseudo-random offset in its stratum, seeded by the shape. Returns sorted,
    disjoint ``(start, stop)`` pairs.

    >>> element_ranges((10,), 100)
    [(0, 10)]
    >>> sum(b - a for a, b in element_ranges((4096, 4096), 20000))
    20000
    """
    total = math.prod(shape)
    if n_elements <= 0 or total == 0:
        return []
    if n_elements >= total:
        return [(0, total)]
    runs = max(1, min(MAX_RUNS, max_runs, n_elements // MIN_RUN))
    rng = random.Random(_shape_seed(tuple(shape)))
    out: list[tuple[int, int]] = []
    for i in range(runs):
        lo = total * i // runs
        hi = total * (i + 1) // runs
        length = min(hi - lo, n_elements // runs + (1 if i < n_elements % runs else 0))
        start = lo + rng.randrange(hi - lo - length + 1)
        out.append((start, start + length))
    return out


def edge_ranges(shape: tuple[int, ...] | list[int], n_elements: int, edge: str) -> list[tuple[int, int]]:
    """``n_elements`` flat positions at the ``head``, the ``tail``, or ``both`` ends of a tensor.

    Thinned plans read tensors where they touch their file neighbours (see :func:`plan_sample`):
    the end of one and the start of the next are then one contiguous range.

    >>> edge_ranges((10, 10), 5, "head"), edge_ranges((10, 10), 5, "tail"), edge_ranges((10, 10), 5, "both")
    ([(0, 5)], [(95, 100)], [(0, 5), (95, 100)])
    >>> edge_ranges((8,), 5, "both")
    [(0, 8)]
    """
    total = math.prod(shape)
    n = min(n_elements, total)
    if n <= 0:
        return []
    if n == total or (edge == "both" and 2 * n >= total):
        return [(0, total)]
    if edge == "head":
        return [(0, n)]
    if edge == "tail":
        return [(total - n, total)]
    return [(0, n), (total - n, total)]


def _shape_seed(shape: tuple[int, ...]) -> int:
    # Python's hash() is salted per process; a cryptographic digest is stable across runs and machines.
    return int.from_bytes(hashlib.blake2b(repr(shape).encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to read from every model: the same flat element ``ranges`` in each.

    ``shape`` is the common shape the positions were drawn from: equal to every model's shape, or
    for vocabulary tensors the shared rows ``(min rows, ...)``; because only the first dimension
    may differ, a flat position in ``shape`` is the same flat position in each model's tensor.
    ``scales`` holds, per model, the scale companion of a quantized weight.
    """

    name: str
    kind: TensorKind
    shape: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]
    metas: dict[str, Meta]
    scales: dict[str, Meta] = field(default_factory=dict)

    @property
    def n_elements(self) -> int:
        return sum(b - a for a, b in self.ranges)

    @property
    def whole(self) -> bool:
        return self.ranges == ((0, math.prod(self.shape)),)

    @property
    def packed(self) -> bool:
        """Some model stores this weight as packed integers (decoded whole on reading)."""
        return any(isinstance(m, PackedMeta) for m in self.metas.values())

    @property
    def decoded(self) -> bool:
        """Some model's values are decoded (scaled or unpacked) rather than read as they are."""
        return bool(self.scales) or self.packed

    def decoded_in(self, ref: str) -> bool:
        return ref in self.scales or isinstance(self.metas.get(ref), PackedMeta)


@dataclass
class SamplePlan:
    """The reads of a scan: per tensor the element ranges, per model where its bytes are.

    ``tensors`` are present in every model. ``extra`` are layer tensors only some models have
    (a depth-upscaled child's additional layers, a pruned model's missing ones): they share a
    layer template and shape with a common tensor, hence its positions, so the statistics can match
    child layer 5 against parent layer 2; their ``metas`` name only the models that hold them.
    ``quantized[ref]`` lists the tensors that model stores as fp8/int8 or, in a full plan, as
    decodable packed integers (decoded to float32 on read), so the relation can say ``quantized``;
    ``quantized_bits[ref]`` is the fewest bits among them (8 for fp8/int8). ``packed[ref]`` counts
    the weights that model stores as packed integers this plan does not decode (see
    :func:`packed_weights`): never compared; ``mostly_packed`` lists the models with more such
    weights than float matrices, and ``full_decodes`` those of them whose packed weights a full
    plan would decode.
    ``notes`` says what was skipped and why.
    """

    tensors: list[TensorPlan]
    refs: list[str]
    budget_bytes: int | None
    full: bool = False
    notes: list[str] = field(default_factory=list)
    quantized: dict[str, list[str]] = field(default_factory=dict)
    experts_per_layer: int | None = None
    extra: list[TensorPlan] = field(default_factory=list)
    packed: dict[str, int] = field(default_factory=dict)
    mostly_packed: list[str] = field(default_factory=list)
    quantized_bits: dict[str, int] = field(default_factory=dict)
    full_decodes: list[str] = field(default_factory=list)

    def planned_bytes(self, ref: str) -> int:
        """Data bytes this plan reads from model ``ref`` (headers and scale companions excluded)."""
        return sum(
            m.nbytes if isinstance(m, PackedMeta) else t.n_elements * m.itemsize
            for t in self.tensors + self.extra
            if (m := t.metas.get(ref)) is not None
        )

    @property
    def elements(self) -> int:
        """Elements compared per model (common tensors)."""
        return sum(t.n_elements for t in self.tensors)

    def by_name(self) -> dict[str, TensorPlan]:
        """Common tensors by name (``extra`` ones are not included)."""
        return {t.name: t for t in self.tensors}


def plan_sample(
    models: dict[str, dict[str, Meta]],
    budget_bytes: int | None = 4 * 2**20,
    full: bool = False,
    extra_layers: bool = True,
    max_requests: int | None = MAX_REQUESTS,
) -> SamplePlan:
    """Plan a stratified sample of the tensors common to all ``models`` (``{ref: {canonical: meta}}``).

    Every layer keeps its attention, router, dense/shared-expert MLP and norm tensors; routed experts
    are subsampled to the same evenly spaced expert ids in every layer and model; embeddings and head
    are always included. One per-tensor element share is chosen so that the sample takes at most
    ``1 - GAP_SHARE`` of ``budget_bytes`` in every model; the reader may spend the rest bridging
    gaps between ranges (fewer requests). ``full=True`` plans every common tensor whole.
    ``extra_layers`` also plans layers only some models have (see :class:`SamplePlan`).

    ``max_requests`` (None: no ceiling) bounds the range requests a sampled plan makes per model:
    a plan of more tensors than that is thinned to seams sharing that many requests, and in a
    smaller one each tensor gets at most ``max_requests // tensors`` runs. Tight budgets thin to
    ``SEAM_REQUESTS`` seams, or fewer under a lower ceiling.

    Raises :class:`ShapeMismatchError` when no tensor is comparable.

    >>> from provbot.detectors.weights.safetensors_format import TensorMeta
    >>> m = {"w": TensorMeta("w", "F32", (64, 64), "f", 8, 8 + 64 * 64 * 4)}
    >>> p = plan_sample({"a": m, "b": m}, budget_bytes=1024)
    >>> p.tensors[0].n_elements, p.planned_bytes("a")   # 20% of the budget is kept for gaps
    (204, 816)
    """
    if len(models) < 1:
        raise ShapeMismatchError("no model to plan a sample for")
    models = align_tied_heads(models)
    refs = list(models)
    notes: list[str] = []
    dtypes = {ref: set(map(_DTYPE, t.values())) for ref, t in models.items()}  # in C: 10^5 tensors
    packed: dict[str, list[str]] = {}  # per model, the packed weights this plan leaves unread
    mostly_packed, full_decodes = [], []
    for ref in refs:
        names = [] if dtypes[ref] <= FLOAT_DTYPES else packed_weights(models[ref])
        decodable = [n for n in names if isinstance(models[ref][n], PackedMeta)]
        raw = [n for n in names if not isinstance(models[ref][n], PackedMeta)]
        if decodable and not full:  # a packed weight is read whole or not at all (see detectors.weights.packed)
            formats = sorted({cast(PackedMeta, models[ref][n]).format for n in decodable})
            models = {**models, ref: {n: m for n, m in models[ref].items() if not isinstance(m, PackedMeta)}}
            notes.append(
                f"{ref} stores {len(decodable)} weight(s) as packed integers ({', '.join(formats)}), which "
                "a sampled scan does not decode: run with --full to compare them"
            )
        if raw:
            notes.append(
                f"{ref} stores {len(raw)} weight(s) as packed integers (e.g. {raw[0]}: GPTQ/AWQ-style "
                "qweight, bitsandbytes 4-bit), in a layout provbot does not decode: they are not compared"
            )
        unread = raw if full else names
        if unread:
            packed[ref] = unread
            if len(unread) > _float_matrices(models[ref]):
                mostly_packed.append(ref)
                if not raw:
                    full_decodes.append(ref)
    experts = _routed_experts(models)
    if not full and budget_bytes is not None:
        models = _without_unsampled_experts(models, experts)
    candidates = _comparable(models, notes)
    if not candidates:
        detail = f" ({'; '.join(notes[:3])})" if notes else ""
        raise ShapeMismatchError(f"no tensor in common between {', '.join(refs)}{detail}")
    extras = _extras(models, candidates, notes) if extra_layers and len(models) > 1 else []
    every = candidates + extras

    quantized, quantized_bits = {}, {}
    for ref in refs:
        if dtypes[ref] <= _PLAIN_FLOAT:
            continue
        held = {
            n: metas[ref]
            for n, _s, metas, _sc in every
            if ref in metas and (metas[ref].dtype in _QUANT_DTYPES or isinstance(metas[ref], PackedMeta))
        }
        if held:
            quantized[ref] = sorted(held)
            quantized_bits[ref] = min(m.bits if isinstance(m, PackedMeta) else 8 for m in held.values())

    chosen: list[tuple[_Candidate, str | None]]
    if full or budget_bytes is None:
        chosen, k, share = [(c, None) for c in every], None, None
    else:
        chosen, k, share = _choose_within_budget(
            every, refs, int(budget_bytes * (1 - GAP_SHARE)), notes, experts, max_requests
        )

    if share == 0:
        notes.append(f"budget of {budget_bytes} bytes is too small for {len(chosen)} tensors: nothing sampled")
    common_names = {c[0] for c in candidates}
    runs = MAX_RUNS if max_requests is None or share is None else _runs(max_requests, len(chosen))
    tensors: list[TensorPlan] = []
    extra: list[TensorPlan] = []
    # In bulk: a full plan holds every tensor, and classify() one by one is cold here (planning
    # classified the names in bulk, which does not fill its cache).
    kinds = classify_many([c[0] for c, _edge in chosen])
    for ((name, shape, metas, scales), edge), kind in zip(chosen, kinds):
        n = math.prod(shape) if share is None else min(share, math.prod(shape))
        if n == 0:
            continue
        ranges = element_ranges(shape, n, runs) if edge is None else edge_ranges(shape, n, edge)
        plan = TensorPlan(name, kind, shape, tuple(ranges), metas, scales)
        (tensors if name in common_names and len(metas) == len(refs) else extra).append(plan)
    return SamplePlan(
        tensors,
        refs,
        None if full else budget_bytes,
        full,
        notes,
        quantized,
        k,
        extra,
        {ref: len(names) for ref, names in packed.items()},
        mostly_packed,
        quantized_bits,
        full_decodes,
    )


_Candidate = tuple[str, tuple[int, ...], dict[str, Meta], dict[str, Meta]]


_DTYPE = attrgetter("dtype")


def packed_weights(tensors: Mapping[str, Meta]) -> list[str]:
    """Weights stored as packed integers, sorted: the ones :func:`provbot.detectors.weights.packed.with_packed`
    made decodable (a ``PackedMeta``) and the raw ones it could not.

    GPTQ, AWQ, Marlin and EXL2 store ``<module>.qweight`` (or ``q_weight``) in place of
    ``<module>.weight``, compressed-tensors ``<module>.weight_packed``; bitsandbytes 4-bit stores
    ``<module>.weight`` as uint8. Raw ones never enter a comparison, whatever the float tensors
    (embeddings, norms) show. int8 weights with a scale companion are decoded, hence not listed.

    >>> from provbot.detectors.weights.safetensors_format import TensorMeta
    >>> m = lambda dtype, shape: TensorMeta("", dtype, shape, "f", 0, 0)
    >>> packed_weights({"a.qweight": m("I32", (8, 64)), "b.weight": m("U8", (512, 1)),
    ...                 "c.weight": m("BF16", (8, 8)), "position_ids": m("I64", (1, 9))})
    ['a.qweight', 'b.weight']
    """
    out = []
    for name, meta in tensors.items():
        if meta.dtype in FLOAT_DTYPES:
            continue
        if (
            isinstance(meta, PackedMeta)
            or name.endswith((".qweight", ".q_weight", ".weight_packed"))
            or (
                name.endswith(".weight")
                and len(meta.shape) >= 2
                and not (meta.dtype == "I8" and scale_companion(name, tensors))
            )
        ):
            out.append(name)
    return sorted(out)


# Float companions of packed weights (GPTQ/AWQ group scales, bitsandbytes absmax, compressed-tensors
# weight_scale): not weights.
# (Their integer companions, qzeros and g_idx, are not float and so never counted.)
_PACKED_COMPANIONS = (".scales", ".absmax", ".weight_scale")


def _float_matrices(tensors: dict[str, Meta]) -> int:
    """Float weights of two or more dimensions, companions of quantized weights left out."""
    return sum(
        m.dtype in FLOAT_DTYPES
        and len(m.shape) >= 2
        and not name.endswith(_PACKED_COMPANIONS)
        and not is_scale_companion(name, tensors)
        for name, m in tensors.items()
    )


def _usable(name: str, ref: str, tensors: dict[str, Meta], notes: list[str]) -> tuple[bool, Meta | None]:
    """(readable as float?, its scale companion) for one model's tensor; notes say why not."""
    meta = tensors[name]
    if meta.dtype in FLOAT_DTYPES and meta.dtype not in _QUANT_DTYPES:
        return True, None  # the common case, without the companion look-ups (100k tensors in big MoEs)
    if isinstance(meta, PackedMeta):  # decoded whole on reading (only full plans keep them)
        return True, None
    sc = scale_companion(name, tensors)
    if meta.dtype not in FLOAT_DTYPES and not (meta.dtype == "I8" and sc):
        notes.append(f"skipped {name}: {meta.dtype} in {ref} is not a float weight")
        return False, None
    if sc is not None and meta.dtype in _QUANT_DTYPES:
        if not scale_fits(meta.shape, tensors[sc].shape):
            notes.append(f"skipped {name}: scale shape {list(tensors[sc].shape)} in {ref} does not fit")
            return False, None
        return True, tensors[sc]
    return True, None


def _comparable(models: dict[str, dict[str, Meta]], notes: list[str]) -> list[_Candidate]:
    """Tensors present in every model, with a common shape and a float (or decodable) dtype."""
    weights = {ref: {n for n in t if not is_scale_companion(n, t)} for ref, t in models.items()}
    common = set.intersection(*weights.values())
    out: list[_Candidate] = []
    shape_skips: list[str] = []
    refs, tables = list(models), list(models.values())
    plain = _PLAIN_FLOAT
    for name in sorted(common):
        ms = [t[name] for t in tables]
        shape0 = ms[0].shape
        for m in ms:  # the common case first, quickly: plain float tensors of one shape
            if m.dtype not in plain or m.shape != shape0:
                break
        else:
            if 0 not in shape0:
                out.append((name, shape0, dict(zip(refs, ms)), {}))
            continue
        metas = dict(zip(refs, ms))
        scales = {}
        for ref in metas:
            ok, sc = _usable(name, ref, models[ref], notes)
            if not ok:
                break
            if sc is not None:
                scales[ref] = sc
        else:
            shape = _common_shape(name, [m.shape for m in metas.values()])
            if shape is None:
                shape_skips.append(name)
                notes.append(
                    f"skipped {name}: shapes differ ({', '.join(f'{r}: {list(m.shape)}' for r, m in metas.items())})"
                )
            elif math.prod(shape) > 0:
                out.append((name, shape, metas, scales))
    if shape_skips and not out:
        raise ShapeMismatchError(
            f"no comparable tensor: all {len(shape_skips)} common tensors differ in shape (e.g. {shape_skips[0]})"
        )
    return out


def _all_names(models: dict[str, dict[str, Meta]], common: bool) -> Set[str]:
    """Names in every model (``common``) or in any; one model's keys when all have the same
    (a child and its candidates usually do), which saves set work over 100k names."""
    tables = list(models.values())
    if all(t.keys() == tables[0].keys() for t in tables[1:]):
        return tables[0].keys()
    sets = [set(t) for t in tables]
    return set.intersection(*sets) if common else set().union(*sets)


def _routed_experts(models: dict[str, dict[str, Meta]]) -> dict[int | None, set[int]]:
    """Routed expert ids per layer among the tensors every model has."""
    kinds = kind_columns(tuple(_all_names(models, common=True)))
    routed = kinds.expert >= 0
    layers, ids = kinds.layer[routed], kinds.expert[routed]
    experts: dict[int | None, set[int]] = {}
    for layer in np.unique(layers).tolist():  # a few dozen layers, each a pass over the columns
        experts[None if layer < 0 else layer] = set(np.unique(ids[layers == layer]).tolist())
    return experts


def _without_unsampled_experts(
    models: dict[str, dict[str, Meta]], experts: dict[int | None, set[int]]
) -> dict[str, dict[str, Meta]]:
    """Drop the routed experts no budget can choose: at most ``MAX_EXPERTS_PER_LAYER`` per layer
    are ever sampled (see :func:`_with_experts`), so a 128-expert MoE's other experts need no checks.
    """
    if not experts or max(len(ids) for ids in experts.values()) <= MAX_EXPERTS_PER_LAYER:
        return models
    reachable = {
        layer: set().union(*(_expert_ids(ids, k) for k in range(1, MAX_EXPERTS_PER_LAYER + 1)))
        for layer, ids in experts.items()
    }
    # Decided once per distinct name (the models mostly share them), then looked up per model.
    names = tuple(_all_names(models, common=False))
    kinds = kind_columns(names)
    keep = kinds.expert < 0
    routed = np.flatnonzero(~keep)
    for layer, chosen in reachable.items():  # a few dozen layers, each a pass over the columns
        at = routed[kinds.layer[routed] == (-1 if layer is None else layer)]
        keep[at] = np.isin(kinds.expert[at], list(chosen))
    kept = list(compress(names, keep.tolist()))
    return {ref: {n: t[n] for n in kept if n in t} for ref, t in models.items()}


def _expert_ids(ids: set[int], k: int) -> set[int]:
    """The ``k`` evenly spaced expert ids of a layer: the same rule in every layer and model."""
    ordered = sorted(ids)
    k = min(k, len(ordered))
    return {ordered[i * len(ordered) // k] for i in range(k)}


def _extras(models: dict[str, dict[str, Meta]], common: list[_Candidate], notes: list[str]) -> list[_Candidate]:
    """Layer tensors missing from some models whose template and shape match a common tensor."""
    names = {c[0] for c in common}
    if all(len(t) == len(names) for t in models.values()) and all(names.issuperset(t) for t in models.values()):
        return []  # every model holds exactly the common tensors
    shapes: dict[str, set[tuple[int, ...]]] = defaultdict(set)
    for name, shape, _m, _s in common:
        tpl = layer_template(name)
        if tpl is not None:
            shapes[tpl].add(shape)
    found: dict[str, tuple[dict[str, Meta], dict[str, Meta]]] = {}
    for ref, tensors in models.items():
        for name, meta in tensors.items():
            if name in names or is_scale_companion(name, tensors):
                continue
            tpl = layer_template(name)
            if tpl is None or meta.shape not in shapes.get(tpl, ()):
                continue
            ok, sc = _usable(name, ref, tensors, [])
            if ok:
                metas, scales = found.setdefault(name, ({}, {}))
                metas[ref] = meta
                if sc is not None:
                    scales[ref] = sc
    out = []
    for name in sorted(found):
        metas, scales = found[name]
        if len({m.shape for m in metas.values()}) == 1:
            out.append((name, next(iter(metas.values())).shape, metas, scales))
    if out:
        holders = sorted({r for _n, _s, metas, _sc in out for r in metas})
        layers = sorted({layer for n, *_ in out if (layer := classify(n).layer) is not None})
        notes.append(f"also read layers {layers} held only by {', '.join(holders)} (for layer matching)")
    return out


def _common_shape(name: str, shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """Equal shapes, or vocabulary tensors that differ in rows only (compared on the shared rows)."""
    first = shapes[0]
    if len(set(shapes)) == 1:
        return first
    kind = classify(name).component
    if kind in ("embedding", "head") and all(len(s) == len(first) and s[1:] == first[1:] for s in shapes):
        return (min(s[0] for s in shapes), *first[1:])
    return None


def scale_fits(weight_shape: tuple[int, ...], scale_shape: tuple[int, ...]) -> bool:
    """A scale is per-tensor (one element), per-row ``(rows,)``/``(rows, 1)`` or per block ``(ceil(R/br), ceil(C/bc))``."""
    if math.prod(scale_shape) == 1:
        return True
    if not weight_shape or not scale_shape:
        return False
    rows, cols = weight_shape[0], math.prod(weight_shape[1:])
    srows, scols = scale_shape[0], math.prod(scale_shape[1:])
    if srows < 1 or scols < 1 or srows > rows or scols > cols:
        return False
    br, bc = math.ceil(rows / srows), math.ceil(cols / scols)
    return math.ceil(rows / br) == srows and math.ceil(cols / bc) == scols


def _choose_within_budget(
    candidates: list[_Candidate],
    refs: list[str],
    budget_bytes: int,
    notes: list[str],
    experts: dict[int | None, set[int]],
    max_requests: int | None = None,
) -> tuple[list[tuple[_Candidate, str | None]], int | None, int]:
    """Pick the expert subset, the tensors and the per-tensor element share that fit ``budget_bytes``.

    ``experts``: every routed expert id per layer (the evenly spaced choice is made among them all).
    Each chosen tensor comes with its edge placement when the plan was thinned to seams (see
    :func:`_seams`), else None (stratified positions). A plan is thinned when its share is tight
    and it has more than ``THIN_ABOVE_TENSORS`` tensors, or when it has more tensors than
    ``max_requests`` (each tensor would be a request of its own).
    """
    kinds = classify_many([c[0] for c in candidates])
    cost = _Costs(candidates, refs)
    k = None
    keep = np.ones(len(candidates), dtype=bool)
    if experts:
        most = max(len(v) for v in experts.values())
        for k in range(min(most, MAX_EXPERTS_PER_LAYER), 0, -1):
            keep = _with_experts(kinds, experts, k)
            share = cost.share(keep, budget_bytes)
            if share >= TARGET_ELEMENTS:
                break
        notes.append(f"sampled {k} of up to {most} routed experts per layer")
    else:
        share = cost.share(keep, budget_bytes)
    edges: dict[int, str] = {}
    tight = share < TARGET_ELEMENTS
    thin_tight = tight and keep.sum() > THIN_ABOVE_TENSORS
    crowded = (
        not thin_tight
        and max_requests is not None
        and keep.sum() > max_requests
        and _requests(candidates, keep, share, refs[0], _runs(max_requests, int(keep.sum())), budget_bytes)
        > max_requests
    )
    if thin_tight or crowded:
        requests = SEAM_REQUESTS if tight or max_requests is None else max_requests
        if max_requests is not None:
            requests = min(requests, max_requests)
        outside = sum(kinds[i].layer is None for i in np.flatnonzero(keep))  # embeddings, head...: a request each
        thinned, edges = _seams(candidates, kinds, keep, refs[0], requests - outside)
        sides = np.array([2 if edges.get(i) == "both" else 1 for i in range(len(candidates))], dtype=np.int64)
        share = cost.share(thinned, budget_bytes, sides)
        why = (
            "the budget allows more elements per tensor that way"
            if tight
            else f"{int(keep.sum())} tensors would each cost a request, over the ceiling of {max_requests} per model"
        )
        notes.append(
            f"read {int(thinned.sum())} of {int(keep.sum())} tensors at seams between file neighbours, "
            f"at most about {requests} requests, components and roles alternating across layers: {why}, "
            "and each seam is one request"
        )
        keep = thinned
    return [(c, edges.get(i)) for i, (c, kept) in enumerate(zip(candidates, keep)) if kept], k, share


def _runs(max_requests: int, tensors: int) -> int:
    """Runs per tensor of a stratified plan of ``tensors`` tensors under a ceiling of requests."""
    return max(1, min(MAX_RUNS, max_requests // max(tensors, 1)))


def _requests(
    candidates: list[_Candidate], keep: np.ndarray, share: int, ref: str, runs: int, budget_bytes: int
) -> int:
    """Range requests the reader would make in model ``ref`` for a stratified plan of ``keep``.

    As the reader does (:func:`~provbot.detectors.weights.byte_ranges.merge_ranges`): touching runs join, and
    gaps are bridged with the budget the sample leaves (counted here at its floor, ``GAP_SHARE``),
    so a budget that holds a small model whole reads it in a request or two.
    """
    ranges = []
    for i in np.flatnonzero(keep):
        _name, shape, metas, _scales = candidates[i]
        meta = metas.get(ref)
        if meta is not None:
            m = stored(meta)
            w = m.itemsize
            ranges += [
                (m.file, m.start + a * w, m.start + b * w)
                for a, b in element_ranges(shape, min(share, math.prod(shape)), runs)
            ]
    return len(merge_ranges(ranges, int(budget_bytes * GAP_SHARE / (1 - GAP_SHARE))))


def _seams(
    candidates: list[_Candidate], kinds: list[TensorKind], keep: np.ndarray, layout: str, requests: int | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """Thin a tight plan to *seams*: per layer, one or a few places where file neighbours meet.

    A seam is the end of one tensor, the small tensors (norms, biases) right after it, and the
    start of the next one, all contiguous in model ``layout``'s files: read there, they are one
    range request. The layers share ``requests`` seams (None: no limit), each at least one (see
    :func:`_room`). A layer's *anchor* is its seam with the tensor role read least so far (and a
    matrix: the layer's fit needs one), so that over the layers the seams rotate through every
    role. With room enough, a layer reads its anchor and the fewest seams covering the components
    the anchor lacks; with less, just the fewest seams covering all its components; with less
    still, its anchor and then the seams of the components read in the fewest layers so far.
    Tensors outside the layers (embeddings, head, final norm) are always kept.

    Returns the kept mask and, per kept layer tensor, where its run sits: ``head``, ``tail`` or
    ``both`` (a tensor between two seams, or a small one inside a seam).
    """
    out = keep.copy()
    edges: dict[int, str] = {}
    by_layer: dict[int, list[int]] = defaultdict(list)
    for i, kind in enumerate(kinds):
        if keep[i] and kind.layer is not None:
            by_layer[kind.layer].append(i)
    order = sorted(by_layer)
    read_components: dict[str, int] = defaultdict(int)
    read_roles: dict[str | None, int] = defaultdict(int)
    for rank, layer in enumerate(order):
        idx = by_layer[layer]
        out[idx] = False
        windows = _layer_windows(candidates, idx, layout)
        members = [_members(w) for w in windows]
        covers = [{kinds[i].component for i in m} for m in members]
        roles = [{layer_template(candidates[i][0]) for i in m} for m in members]
        matrices = [any(len(candidates[i][1]) > 1 for i in m) for m in members]
        components = {kinds[i].component for i in idx}

        def least_role(w: int) -> tuple[bool, int, int]:
            return matrices[w], -min(read_roles[r] for r in roles[w]), -((w - layer) % len(windows))

        def rarest(w: int, missing: set[str]) -> tuple[bool, int, tuple[bool, int, int]]:
            new = missing & covers[w]
            return bool(new), -min((read_components[c] for c in new), default=0), least_role(w)

        def cover_of(missing: set[str]) -> list[int]:
            # Per set of components a seam adds, the seam of the least read role; then the fewest sets.
            best: dict[frozenset[str], int] = {}
            for w in range(len(windows)):
                new = frozenset(missing & covers[w])
                if new and (new not in best or least_role(w) > least_role(best[new])):
                    best[new] = w
            return [best[c] for c in _min_cover(frozenset(best), frozenset(missing))]

        anchor = max(range(len(windows)), key=least_role)
        room = None if requests is None else _room(requests, len(order), rank)
        with_anchor = [anchor, *cover_of(components - covers[anchor])]
        if room is None or len(with_anchor) <= room:
            chosen = with_anchor
        elif len(cover := cover_of(components)) <= room:
            chosen = cover
        else:
            chosen, missing = [anchor], components - covers[anchor]
            while missing and len(chosen) < room:
                w = max((w for w in range(len(windows)) if w not in chosen), key=lambda w: rarest(w, missing))
                chosen.append(w)
                missing -= covers[w]
        for w in chosen:
            for c in covers[w]:
                read_components[c] += 1
            for r in roles[w]:
                read_roles[r] += 1
            left, small, right = windows[w]
            sided: list[tuple[int | None, str]] = [(left, "tail"), *((i, "both") for i in small), (right, "head")]
            for j, side in sided:
                if j is not None:
                    out[j] = True
                    edges[j] = side if edges.get(j, side) == side else "both"
    return out, edges


@lru_cache(maxsize=256)
def _min_cover(sets: frozenset[frozenset[str]], needed: frozenset[str]) -> tuple[frozenset[str], ...]:
    """The fewest of ``sets`` whose union holds ``needed`` (exact: a layer has a handful of components).

    >>> sorted(map(sorted, _min_cover(frozenset(map(frozenset, [{"a"}, {"a", "b"}, {"b", "c"}, {"c"}])), frozenset("abc"))))
    [['a', 'b'], ['b', 'c']]
    """
    useful = sorted((x for x in sets if not any(x < y for y in sets)), key=sorted)  # subsets never help
    for k in range(1, len(useful) + 1):
        for combo in combinations(useful, k):
            if needed <= frozenset().union(*combo):
                return combo
    return tuple(useful)


def _room(requests: int, layers: int, rank: int) -> int:
    """Seams for the ``rank``-th of ``layers`` layers sharing ``requests``: at least one, the
    remainder spread evenly (48 layers sharing 61: about every fourth layer gets a second).

    >>> [_room(61, 48, r) for r in range(8)]
    [1, 1, 1, 2, 1, 1, 1, 2]
    """
    per, extra = divmod(max(requests, layers), layers)
    return per + ((rank + 1) * extra // layers - rank * extra // layers)


_Window = tuple[int | None, list[int], int | None]  # (tensor read at its tail, small ones read whole, at its head)


def _members(window: _Window) -> list[int]:
    left, small, right = window
    return [i for i in (left, *small, right) if i is not None]


def _layer_windows(candidates: list[_Candidate], idx: list[int], layout: str) -> list[_Window]:
    """The seams of one layer in file order: ``(left, smalls, right)`` runs of contiguous tensors.

    A tensor with no contiguous neighbour is a window of its own (read at its head).
    """

    def meta(i: int) -> TensorMeta:
        metas = candidates[i][2]  # a layer only some models hold: the first holder's layout
        return stored(metas[layout] if layout in metas else next(iter(metas.values())))

    order = sorted(idx, key=lambda i: (meta(i).file, meta(i).start))
    chains: list[list[int]] = []
    for i in order:
        prev = chains[-1][-1] if chains else None
        if prev is not None and meta(prev).file == meta(i).file and meta(prev).end == meta(i).start:
            chains[-1].append(i)
        else:
            chains.append([i])
    windows: list[_Window] = []
    for chain in chains:
        left: int | None = None
        small: list[int] = []
        for i in chain:
            if len(candidates[i][1]) == 1:  # norms, biases: small, and read whole inside a seam
                small.append(i)
                continue
            if left is not None or small:
                windows.append((left, small, i))
            elif len(chain) == 1:
                windows.append((None, [], i))
            left, small = i, []
        if small:
            windows.append((left, small, None))
    return windows


def _with_experts(kinds: list[TensorKind], experts: dict[int | None, set[int]], k: int) -> np.ndarray:
    """Mask of the tensors kept with ``k`` routed experts per layer (all non-expert tensors)."""
    kept = {(layer, e) for layer, ids in experts.items() for e in _expert_ids(ids, k)}
    return np.array([kind.expert is None or (kind.layer, kind.expert) in kept for kind in kinds], dtype=bool)


class _Costs:
    """Bytes a per-tensor element share costs in each model, for any subset of the candidates."""

    def __init__(self, candidates: list[_Candidate], refs: list[str]) -> None:
        self.numel = np.array([math.prod(c[1]) for c in candidates], dtype=np.int64)
        # (models, tensors) item sizes, 0 where a model lacks the tensor.
        size = {name: d.itemsize for name, d in DTYPES.items()}
        self.itemsize = np.array(
            [[size[c[2][r].dtype] if r in c[2] else 0 for c in candidates] for r in refs], dtype=np.int64
        )

    def share(self, keep: np.ndarray, budget_bytes: int, sides: np.ndarray | None = None) -> int:
        """Largest s with sum(min(sides * s, numel) * itemsize) <= budget in every model, over ``keep``.

        ``sides``: runs per tensor (2 for a tensor read at both ends, see :func:`_seams`; default 1).
        """
        numel, w = self.numel[keep], self.itemsize[:, keep]
        mult = np.ones_like(numel) if sides is None else sides[keep]
        if numel.size == 0:
            return 0
        lo, hi = 0, int(numel.max())
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int((w @ np.minimum(numel, mult * mid)).max()) <= budget_bytes:
                lo = mid
            else:
                hi = mid - 1
        return lo
