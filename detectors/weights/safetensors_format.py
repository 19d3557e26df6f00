"""The safetensors file format: header parsing with strict validation, dtypes, and decoding.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {...}}``, then the data.
:func:`parse_header` turns the JSON into :class:`TensorMeta` records with *absolute* byte offsets,
so that readers (local ``pread`` or HTTP ``Range``) never need the header again.

>>> import json
>>> body = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
>>> header_length(len(body).to_bytes(8, "little"), "m.safetensors", file_size=8 + len(body) + 8)
61
>>> parse_header(body, "m.safetensors", file_size=8 + len(body) + 8)["w"].start
69
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

import msgspec
import numpy as np
import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.text import as_name

#: The safetensors library refuses headers longer than this; so do we (a hostile file could claim 1 TB).
MAX_HEADER_BYTES = 25_000_000


@dataclass(frozen=True, slots=True)
class DType:
    """A safetensors dtype: its size in bytes and the torch dtype its bytes are viewed as."""

    name: str
    itemsize: int
    torch_dtype: torch.dtype

    @property
    def is_float8(self) -> bool:
        return self.name.startswith("F8_")


#: Every dtype we can decode. F8_E4M3 is the "fn" variant (no infinities), as in the safetensors library.
DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("F64", 8, torch.float64),
        DType("F32", 4, torch.float32),
        DType("F16", 2, torch.float16),
        DType("BF16", 2, torch.bfloat16),
        DType("F8_E4M3", 1, torch.float8_e4m3fn),
        DType("F8_E5M2", 1, torch.float8_e5m2),
        DType("I64", 8, torch.int64),
        DType("I32", 4, torch.int32),
        DType("I16", 2, torch.int16),
        DType("I8", 1, torch.int8),
        DType("U8", 1, torch.uint8),
        DType("U16", 2, torch.uint16),
        DType("U32", 4, torch.uint32),
        DType("U64", 8, torch.uint64),
        DType("BOOL", 1, torch.bool),
    )
}
#: Floating-point storage dtypes (fp8 included): the ones whose values are weights as they are.
FLOAT_DTYPES = frozenset(name for name, d in DTYPES.items() if d.torch_dtype.is_floating_point)


class TensorMeta(NamedTuple):
    """Where one tensor's bytes are: ``file`` (relative to the model root) at ``[start, end)``.

    ``start``/``end`` are absolute file offsets (header included), so a reader can fetch
    ``bytes[start:end]`` directly. A named tuple: immutable, and cheap to build by the hundred
    thousand (a frozen dataclass costs several times more per record).

    >>> TensorMeta("w", "BF16", (2, 3), "model.safetensors", 100, 112).numel
    6
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def header_length(first8: bytes, file: str, file_size: int | None = None) -> int:
    """Validate the 8-byte length prefix and return the JSON header length ``N``.

    >>> header_length((10).to_bytes(8, "little"), "x", file_size=18)
    10
    """
    if len(first8) < 8:
        raise WeightFormatError(f"{file}: not a safetensors file (shorter than the 8-byte header length)")
    n = int.from_bytes(first8[:8], "little")
    if n < 2:
        raise WeightFormatError(f"{file}: header length {n} is too small to hold a JSON object")
    if n > MAX_HEADER_BYTES:
        raise WeightFormatError(f"{file}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if file_size is not None and 8 + n > file_size:
        raise WeightFormatError(f"{file}: header length {n} is larger than the file ({file_size} bytes)")
    return n


def parse_header(
    header: bytes, file: str, file_size: int | None = None, label: str | None = None
) -> dict[str, TensorMeta]:
    """Parse and validate the JSON header (the ``N`` bytes after the length prefix).

    Checks: valid UTF-8 JSON object; every entry has a known dtype, a shape of non-negative ints and
    ``data_offsets`` whose length equals ``numel * itemsize``; offsets do not overlap and stay inside
    the file (when ``file_size`` is known). ``__metadata__`` is ignored. Errors name ``label``
    (default ``file``), e.g. ``org/model/model-00002-of-00009.safetensors``.
    """
    label = label or file
    key = (hashlib.blake2b(header, digest_size=16).digest(), file, file_size)
    with _PARSED.claim(key):
        known = _PARSED.get(key)
        if known is not None:
            return known
        data_start = 8 + len(header)
        data_size = None if file_size is None else file_size - data_start
        fast = _parse_valid(header, file, data_start, data_size)
        if fast is not None:
            _check_overlaps(fast.values(), label)
            _PARSED.put(key, fast)
            return fast
    try:
        obj = json.loads(header.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or a number too long to convert
        raise WeightFormatError(f"{label}: header is not valid JSON ({exc.__class__.__name__})") from None
    except RecursionError:  # the parser's depth limit: no real header nests more than three deep
        raise WeightFormatError(f"{label}: header JSON is nested too deep") from None
    if not isinstance(obj, dict):
        raise WeightFormatError(f"{label}: header is a JSON {type(obj).__name__}, expected an object")
    out: dict[str, TensorMeta] = {}
    for name, entry in obj.items():
        if name == "__metadata__":
            continue
        name = as_name(name)
        out[name] = _tensor_entry(name, entry, file, label, data_start, data_size)
    _check_overlaps(out.values(), label)
    return out


class _ParsedHeaders:
    """Valid headers already parsed, by content (header digest, file name, file size).

    Fine-tunes saved by one library share their shard headers byte for byte, and the service scans
    the same bases again and again: each such header is parsed once. Bounded by tensor entries
    (least recently used first out); each caller gets its own dict of the shared, immutable records.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[object, ...], dict[str, TensorMeta]] = OrderedDict()
        self._entries = 0
        self._lock = threading.Lock()
        self._pending: dict[tuple[object, ...], tuple[threading.Lock, int]] = {}

    def get(self, key: tuple[object, ...]) -> dict[str, TensorMeta] | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
        return dict(found)

    @contextmanager
    def claim(self, key: tuple[object, ...]) -> Iterator[None]:
        """Held while ``key`` is parsed: models opened side by side often share a header, and the
        second one waits for the first's parse rather than parsing it again."""
        with self._lock:
            lock, users = self._pending.get(key, (None, 0))
            lock = lock or threading.Lock()
            self._pending[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                users = self._pending[key][1] - 1
                if users:
                    self._pending[key] = (lock, users)
                else:
                    del self._pending[key]

    def put(self, key: tuple[object, ...], metas: dict[str, TensorMeta]) -> None:
        if len(metas) > self.max_entries:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = dict(metas)
            self._entries += len(metas)
            while self._entries > self.max_entries:
                _, old = self._items.popitem(last=False)
                self._entries -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._entries = 0


#: At most this many tensor entries are kept parsed (a few tens of MB).
PARSED_CACHE_ENTRIES = 250_000
_PARSED = _ParsedHeaders(PARSED_CACHE_ENTRIES)


#: The dtype names a header may use, checked by the decoder itself.
if TYPE_CHECKING:
    _DtypeName = str
else:
    _DtypeName = Literal[tuple(DTYPES)]
_ITEMSIZE = {name: d.itemsize for name, d in DTYPES.items()}


class _Entry(msgspec.Struct, gc=False):
    """One header entry as msgspec decodes it; all optional, so ``__metadata__`` decodes too.

    The dtype and the shape (a tuple of non-negative ints, as :class:`TensorMeta` keeps it) are
    checked in C while decoding. ``gc=False``: the cycle collector never looks at these records
    (a MoE header holds 10^5 of them, which would otherwise trigger full collections).
    """

    dtype: _DtypeName | None = None
    shape: tuple[Annotated[int, msgspec.Meta(ge=0)], ...] | None = None
    data_offsets: tuple[int, int] | None = None


_DECODER = msgspec.json.Decoder(dict[str, _Entry])


def _parse_valid(header: bytes, file: str, data_start: int, data_size: int | None) -> dict[str, TensorMeta] | None:
    """The entries of a header that is valid in every respect, else None.

    Decoding straight into typed records (msgspec, in C) is several times faster than json plus
    per-entry checks in Python, which matters for MoE checkpoints of 100k tensors. Anything
    unusual returns None, and :func:`parse_header`'s detailed checks then say what is wrong.
    """
    try:
        entries = _DECODER.decode(header)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    return _valid_entries(entries, file, data_start, data_size)


def _valid_entries(
    entries: dict[str, _Entry], file: str, data_start: int, data_size: int | None
) -> dict[str, TensorMeta] | None:
    out: dict[str, TensorMeta] = {}
    limit = math.inf if data_size is None else data_size
    prod, size, make = math.prod, _ITEMSIZE, tuple.__new__  # the loop runs once per tensor: 10^5 in big MoEs
    for name, e in entries.items():
        if name == "__metadata__":
            continue
        if not (
            name.isascii() and name.isprintable()
        ):  # the detailed parse escapes what cannot be printed (detectors.text)
            return None
        dtype, shape, offsets = e.dtype, e.shape, e.data_offsets
        if dtype is None or shape is None or offsets is None:
            return None
        begin, end = offsets
        if begin < 0 or end - begin != prod(shape) * size[dtype] or end > limit:
            return None
        out[name] = make(TensorMeta, (name, dtype, shape, file, data_start + begin, data_start + end))
    return out


def _tensor_entry(
    name: str, entry: object, file: str, label: str, data_start: int, data_size: int | None
) -> TensorMeta:
    where = f"{label}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise WeightFormatError(f"{where}: entry is not an object")
    dtype = entry.get("dtype")
    if dtype not in DTYPES:
        raise WeightFormatError(f"{where}: unknown dtype {dtype!r}")
    shape = entry.get("shape")
    # bool is an int subclass in Python: reject it explicitly so `true` is not a dimension.
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise WeightFormatError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    offs = entry.get("data_offsets")
    if (
        not isinstance(offs, list)
        or len(offs) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
    ):
        raise WeightFormatError(f"{where}: data_offsets {offs!r} is not a pair of integers")
    begin, end = offs
    if begin < 0 or end < begin:
        raise WeightFormatError(f"{where}: data_offsets [{begin}, {end}] are negative or reversed")
    expected = math.prod(shape) * DTYPES[dtype].itemsize
    if end - begin != expected:
        raise WeightFormatError(
            f"{where}: data_offsets span {end - begin} bytes but shape {shape} x {dtype} needs {expected}"
        )
    if data_size is not None and end > data_size:
        raise WeightFormatError(f"{where}: data_offsets end {end} is past the end of the file")
    return TensorMeta(name, dtype, tuple(shape), file, data_start + begin, data_start + end)


def _check_overlaps(metas: Collection[TensorMeta], file: str) -> None:
    """No two tensors share a byte: sorted by start, each non-empty span ends before the next begins."""
    try:
        # As columns: 10^5 tensors in big MoEs, and no tuple per tensor to build and sort.
        starts = np.fromiter(map(_START, metas), dtype=np.int64, count=len(metas))
        ends = np.fromiter(map(_END, metas), dtype=np.int64, count=len(metas))
    except OverflowError:  # offsets past int64 (only a hostile header has them): the slow way
        spans = sorted((m.start, m.end, m.name) for m in metas if m.end > m.start)
        for (_s0, e0, n0), (s1, _e1, n1) in zip(spans, spans[1:]):
            if s1 < e0:
                raise WeightFormatError(f"{file}: tensors {n0!r} and {n1!r} overlap in the data section") from None
        return
    held = np.flatnonzero(ends > starts)
    order = held[np.lexsort((ends[held], starts[held]))]
    clash = np.flatnonzero(starts[order[1:]] < ends[order[:-1]])
    if clash.size:
        records = list(metas)
        first, second = records[order[clash[0]]], records[order[clash[0] + 1]]
        raise WeightFormatError(f"{file}: tensors {first.name!r} and {second.name!r} overlap in the data section")


_START, _END = attrgetter("start"), attrgetter("end")


def view(raw: bytes | bytearray | memoryview, dtype: str) -> torch.Tensor:
    """Little-endian raw bytes as a 1-D CPU tensor of ``dtype`` itself (bf16 stays bf16).

    A bytearray or writable memoryview is viewed without a copy (the tensor shares its memory);
    immutable bytes are copied once, because ``torch.frombuffer`` wants a writable buffer.

    >>> view(bytearray([0, 0, 128, 63]), "F32")
    tensor([1.])
    """
    dt = DTYPES[dtype]
    if len(raw) % dt.itemsize:
        raise WeightFormatError(f"{len(raw)} bytes are not a whole number of {dtype} elements")
    if len(raw) == 0:
        return torch.zeros(0, dtype=dt.torch_dtype)
    writable = isinstance(raw, bytearray) or (isinstance(raw, memoryview) and not raw.readonly and raw.c_contiguous)
    return torch.frombuffer(raw if writable else bytearray(raw), dtype=dt.torch_dtype)


def decode(raw: bytes | bytearray | memoryview, dtype: str) -> torch.Tensor:
    """View little-endian raw bytes as ``dtype`` and return a 1-D float32 tensor (CPU).

    >>> decode(bytes([0, 0, 128, 63]), "F32")
    tensor([1.])
    """
    return view(raw, dtype).to(torch.float32)
