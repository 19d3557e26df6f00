"""Weight sketch: a few hundred KB of a model's values at positions fixed by tensor shape.

Positions come from :func:`provbot.detectors.weights.sampling.element_ranges`, a deterministic function of
the shape only, so any two models of a family are sampled at the same elements (and the same as a
scan samples). A sketch keeps, per canonical tensor name, the (effective) shape, the number of
values and the values as float32; float32 because fine-tune deltas are ~1e-3 of the weights and
would drown in float16 rounding.

Which tensors: every float tensor except routed experts beyond :data:`MAX_EXPERTS` (a 512-expert
model would otherwise need megabytes). Vocabulary tensors are sampled within their first
:data:`VOCAB_PREFIX_ROWS` rows, so a model with an expanded vocabulary still lines up.

Binary format (versioned): ``b"PVSK"``, u16 version, u32 header length, JSON header
``{"v", "positions", "entries": [[name, shape, n], ...]}``, then ``sum(n)`` little-endian float32.

>>> s = Sketch(entries=[SketchEntry("a.weight", (4, 4), 2)], values=np.array([1.0, 2.0], dtype=np.float32))
>>> Sketch.from_bytes(s.to_bytes()).values.tolist()
[1.0, 2.0]
"""

from __future__ import annotations

import functools
import json
import logging
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from provbot.bot.index.errors import SketchFormatError
from provbot.detectors.weights.keys import canonical_tensors, classify, is_scale_companion
from provbot.detectors.weights.safetensors_format import FLOAT_DTYPES

if TYPE_CHECKING:  # torch stays out of processes that only read the index
    from provbot.detectors.weights.safetensors_format import TensorMeta

log = logging.getLogger(__name__)

SKETCH_VERSION = 1
MAGIC = b"PVSK"
#: Values per matrix (2-D or more) and per vector (norms, biases).
PER_MATRIX = 256
PER_VECTOR = 32
#: Routed experts sketched per layer (expert ids 0..MAX_EXPERTS-1).
MAX_EXPERTS = 4
#: Vocabulary tensors are sampled within this many leading rows.
VOCAB_PREFIX_ROWS = 4096
#: Length of the screening vector (a fixed subsample of the sketch used to shortlist candidates).
SCREEN_LEN = 2048
_MAX_HEADER = 64 * 1024 * 1024
#: Most requests reading a model for the index makes: its shard headers (two each with the Hub's redirect) and
#: the sketch's range reads share it (resolve calls are rate-limited).
MAX_REQUESTS = 256
#: The fewest range requests a sketch is allowed, whatever its headers cost.
MIN_REQUESTS = 32
#: Most unrequested bytes read to meet that ceiling (a model of thousands of tensors may need more:
#: it then makes more requests rather than read gigabytes).
MAX_GAP_BYTES = 64 * 2**20


@dataclass(frozen=True, slots=True)
class SketchEntry:
    name: str
    shape: tuple[int, ...]
    n: int


@dataclass(slots=True)
class Sketch:
    """Sketch values in entry order; ``offsets`` locate each entry's slice of ``values``."""

    entries: list[SketchEntry]
    values: np.ndarray
    positions: str = "sampling.element_ranges"
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pos = 0
        self.offsets = {}
        for e in self.entries:
            self.offsets[e.name] = (pos, pos + e.n)
            pos += e.n
        if pos != len(self.values):
            raise SketchFormatError(f"sketch holds {len(self.values)} values but its entries need {pos}")

    @property
    def layout_key(self) -> tuple:
        return (self.positions, tuple(self.entries))

    def to_bytes(self) -> bytes:
        header = json.dumps(
            {
                "v": SKETCH_VERSION,
                "positions": self.positions,
                "entries": [[e.name, list(e.shape), e.n] for e in self.entries],
            },
            separators=(",", ":"),
        ).encode()
        return MAGIC + struct.pack("<HI", SKETCH_VERSION, len(header)) + header + self.values.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Sketch:
        """Parse a stored sketch; anything malformed raises :class:`SketchFormatError`."""
        if len(blob) < 10 or blob[:4] != MAGIC:
            raise SketchFormatError("not a provbot sketch (bad magic)")
        version, hlen = struct.unpack("<HI", blob[4:10])
        if version != SKETCH_VERSION:
            raise SketchFormatError(
                f"sketch version {version} is not supported (this provbot reads {SKETCH_VERSION}); re-add the model"
            )
        if hlen > _MAX_HEADER or 10 + hlen > len(blob):
            raise SketchFormatError("sketch header length is past the end of the data")
        entries, positions = _parse_header(bytes(blob[10 : 10 + hlen]))
        body = blob[10 + hlen :]
        if len(body) % 4:
            raise SketchFormatError("sketch data is not a whole number of float32 values")
        values = np.frombuffer(body, dtype="<f4").astype(np.float32)
        return cls(entries=list(entries), values=values, positions=positions)

    def screen(self) -> np.ndarray:
        """A fixed subsample (same indices for every sketch of one layout) for cheap shortlisting."""
        return self.values[screen_indices(len(self.values))]

    def common(self, other: Sketch) -> tuple[np.ndarray, np.ndarray]:
        """Index arrays into ``self.values`` and ``other.values`` over the entries both hold identically.

        Exact family members share every entry; partial matches (other depth, larger vocabulary)
        share the entries whose name, effective shape and count agree.
        """
        if self.positions != other.positions:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        mine, theirs = [], []
        other_entries = {e.name: e for e in other.entries}
        for e in self.entries:
            o = other_entries.get(e.name)
            if o is not None and o.shape == e.shape and o.n == e.n:
                a, b = self.offsets[e.name], other.offsets[e.name]
                mine.append(np.arange(*a))
                theirs.append(np.arange(*b))
        if not mine:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(mine), np.concatenate(theirs)


@functools.lru_cache(maxsize=256)
def _parse_header(raw: bytes) -> tuple[list[SketchEntry], str]:
    # Every model of a family has the same header: parse it once (ranking loads a dozen sketches).
    try:
        header = json.loads(raw)
        entries = [SketchEntry(str(n), tuple(int(x) for x in s), int(k)) for n, s, k in header["entries"]]
        return entries, str(header["positions"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SketchFormatError(f"sketch header is malformed: {exc}") from None


def screen_indices(total: int) -> np.ndarray:
    """Evenly spaced indices (deterministic in ``total``) of the screening subsample.

    >>> screen_indices(10).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """
    if total <= SCREEN_LEN:
        return np.arange(total)
    return np.linspace(0, total - 1, SCREEN_LEN).astype(np.int64)


@dataclass(frozen=True, slots=True)
class _Planned:
    entry: SketchEntry
    meta: TensorMeta
    ranges: list[tuple[int, int]]  # element ranges [start, stop) in the flattened tensor


def plan_sketch(tensors: dict[str, TensorMeta], source: str = "model") -> list[_Planned]:
    """Choose the sketched tensors and their element ranges (no I/O)."""
    canon = canonical_tensors(tensors, source)
    planned = []
    for name in sorted(canon):
        meta = canon[name]
        if meta.dtype not in FLOAT_DTYPES or is_scale_companion(name, canon) or meta.numel == 0:
            continue  # integer-packed (quantized) tensors have no comparable float values
        kind = classify(name)
        if kind.expert is not None and kind.expert >= MAX_EXPERTS:
            continue
        shape = tuple(meta.shape)
        if kind.component in ("embedding", "head") and len(shape) == 2:
            shape = (min(shape[0], VOCAB_PREFIX_ROWS), shape[1])
        numel = math.prod(shape)
        n = min(numel, PER_MATRIX if len(shape) >= 2 else PER_VECTOR)
        ranges = element_ranges(shape, n)
        count = sum(b - a for a, b in ranges)
        planned.append(_Planned(SketchEntry(name, shape, count), meta, ranges))
    return planned


def fit_layers(planned: list[_Planned], max_requests: int, max_gap_bytes: int) -> list[_Planned]:
    """The planned reads, or those of every ``stride``-th layer (plus entries outside layers) when
    even bridging ``max_gap_bytes`` of gaps leaves more than ``max_requests`` reads (a 400B MoE:
    ~2,000 sketched tensors gigabytes apart).

    The stride is the smallest power of two that fits: two models of one layout keep the same
    layers, or one a subset of the other's (a copy sharded differently has another budget), and
    sketches compare on the entries they share.
    """
    from provbot.detectors.weights.byte_ranges import merge_ranges

    layer_of = {p.entry.name: classify(p.entry.name).layer for p in planned}
    layers = sorted({layer for layer in layer_of.values() if layer is not None})
    stride, kept = 1, planned
    while len(merge_ranges(_byte_ranges(kept), max_gap_bytes)) > max_requests and stride < len(layers):
        stride *= 2
        chosen = set(layers[::stride])
        kept = [p for p in planned if layer_of[p.entry.name] is None or layer_of[p.entry.name] in chosen]
    return kept


def _byte_ranges(planned: list[_Planned]) -> list[tuple[str, int, int]]:
    out = []
    for p in planned:
        size = p.meta.itemsize
        for a, b in p.ranges:
            out.append((p.meta.file, p.meta.start + a * size, p.meta.start + b * size))
    return out


def read_sketch(
    source,
    tensors: dict[str, TensorMeta] | None = None,
    *,
    max_requests: int | None = MAX_REQUESTS,
    max_gap_bytes: int = MAX_GAP_BYTES,
) -> Sketch:
    """Read a model's sketch through a :class:`~provbot.detectors.weights.sources.WeightSource`.

    Reads the sampled bytes (a few hundred KB) with the source's concurrent range requests, at most
    ``max_requests`` of them (None: no ceiling): the smallest gaps between reads are read too, so
    that neighbouring reads become one, up to ``max_gap_bytes`` unrequested bytes in all. The
    positions never change (they must match every other sketch of the family); only how many
    requests fetch them.
    """
    from provbot.detectors.weights.byte_ranges import gap_for, merge_ranges
    from provbot.detectors.weights.safetensors_format import decode

    tensors = tensors if tensors is not None else source.tensors()
    planned = plan_sketch(tensors, getattr(source, "ref", "model"))
    if max_requests is not None:
        # The shard headers were read first, each a resolve (plus its redirect) on the Hub: the
        # sketch gets what is left of the model's ceiling, so one `index add` stays within it.
        files = len({meta.file for meta in tensors.values()})
        max_requests = max(min(MIN_REQUESTS, max_requests), max_requests - 2 * files)
        planned = fit_layers(planned, max_requests, max_gap_bytes)
    requests = _byte_ranges(planned)
    gap = 0
    if max_requests is not None and requests:
        gap = gap_for(requests, max_requests)
        if gap > max_gap_bytes:
            gap = max_gap_bytes
            log.info(
                "%s: the sketch needs %d requests; bridging %d MiB of gaps between them cuts that to %d",
                getattr(source, "ref", "model"),
                len(merge_ranges(requests)),
                max_gap_bytes >> 20,
                len(merge_ranges(requests, gap)),
            )
    blobs = source.read_ranges(requests, gap_bytes=gap) if requests else []
    values = np.empty(sum(p.entry.n for p in planned), dtype=np.float32)
    pos = 0
    it = iter(blobs)
    for p in planned:
        for a, b in p.ranges:
            chunk = decode(next(it), p.meta.dtype).numpy()
            values[pos : pos + (b - a)] = chunk
            pos += b - a
    if not np.isfinite(values).all():
        # NaN/inf would poison every regression that touches this model; zero them and go on.
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return Sketch(entries=[p.entry for p in planned], values=values)


def element_ranges(shape: tuple[int, ...], n: int) -> list[tuple[int, int]]:
    """Element ranges ``[start, stop)`` sampled from a tensor of ``shape``: the scan's own positions."""
    from provbot.detectors.weights import sampling

    out = [(int(a), int(b)) for a, b in sampling.element_ranges(shape, n)]
    numel = math.prod(shape)
    if any(not (0 <= a < b <= numel) for a, b in out):
        raise SketchFormatError(f"sampling gave element ranges outside a tensor of shape {list(shape)}")
    return out
