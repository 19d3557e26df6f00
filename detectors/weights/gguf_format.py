"""The GGUF file format (llama.cpp): header, metadata and tensor infos from ranged reads; blocks decoded.

A GGUF file is ``"GGUF"``, a version (2 or 3), the tensor and metadata counts, the metadata
key-value pairs, one info record per tensor (name, dimensions innermost first, ggml type, offset),
padding to ``general.alignment`` (32 by default), then the tensor data. :func:`parse_header` reads
only the header, growing its read as far as the header goes, so a sampled scan never downloads the
file. Every count, length and offset is checked against hard limits first: the file comes from a
stranger.

Quantized tensors are stored in blocks along each row (32 values for ``Q8_0``, 256 for the
K-quants); :func:`block_span` says which bytes hold a run of elements, and :func:`decode_blocks`
turns those bytes into float32.

>>> raw = _demo_file()
>>> h = parse_header(lambda start, end: raw[start:end], "demo.gguf", len(raw))
>>> h.metadata["general.architecture"], [(t.name, t.ggml_type, t.shape) for t in h.tensors]
('llama', [('token_embd.weight', 'F32', (2, 4))])
>>> h.data_start, block_span(h.tensors[0], 1, 3)   # F32: blocks of one value
(128, (132, 140, 0))
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.text import as_name

#: The header (metadata and tensor infos) of a real model is a few MiB, most of it the vocabulary;
#: a hostile file could claim gigabytes.
MAX_HEADER_BYTES = 128 * 2**20
#: One string (a key, a tensor name, a chat template, a vocabulary entry).
MAX_STRING_BYTES = 16 * 2**20
MAX_NAME_BYTES = 64 * 2**10
MAX_ARRAY_ITEMS = 16 * 2**20
MAX_ARRAY_DEPTH = 4
MAX_DIMS = 4
#: Arrays longer than this are summarised (type and length), not kept: vocabularies run to 250k entries.
KEEP_ARRAY_ITEMS = 64
#: The first read; later ones double until the header is whole.
FIRST_READ_BYTES = 256 * 2**10

MAGIC = b"GGUF"


class ValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_SCALARS: dict[int, struct.Struct] = {
    ValueType.UINT8: struct.Struct("<B"),
    ValueType.INT8: struct.Struct("<b"),
    ValueType.UINT16: struct.Struct("<H"),
    ValueType.INT16: struct.Struct("<h"),
    ValueType.UINT32: struct.Struct("<I"),
    ValueType.INT32: struct.Struct("<i"),
    ValueType.FLOAT32: struct.Struct("<f"),
    ValueType.BOOL: struct.Struct("<?"),
    ValueType.UINT64: struct.Struct("<Q"),
    ValueType.INT64: struct.Struct("<q"),
    ValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class GgmlType:
    """A ggml tensor type: values per block and bytes per block (1 and the item size for plain floats)."""

    name: str
    block_size: int
    block_bytes: int


#: ggml type ids (llama.cpp's ``ggml_type``) with their block layouts. Only these are decoded;
#: a tensor of another type is kept in the header but left out of scans with a note.
GGML_TYPES: dict[int, GgmlType] = {
    0: GgmlType("F32", 1, 4),
    1: GgmlType("F16", 1, 2),
    2: GgmlType("Q4_0", 32, 18),
    3: GgmlType("Q4_1", 32, 20),
    6: GgmlType("Q5_0", 32, 22),
    7: GgmlType("Q5_1", 32, 24),
    8: GgmlType("Q8_0", 32, 34),
    12: GgmlType("Q4_K", 256, 144),
    13: GgmlType("Q5_K", 256, 176),
    14: GgmlType("Q6_K", 256, 210),
    30: GgmlType("BF16", 1, 2),
}
#: Bits per weight of each decodable type, for the quantization note and tolerance.
TYPE_BITS: dict[str, float] = {
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "Q8_0": 8.5,
    "Q6_K": 6.5625,
    "Q5_0": 5.5,
    "Q5_1": 6,
    "Q5_K": 5.5,
    "Q4_0": 4.5,
    "Q4_1": 5,
    "Q4_K": 4.5,
}
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})


@dataclass(frozen=True, slots=True)
class ArraySummary:
    """A long metadata array, summarised: its item type and length."""

    item_type: str
    length: int


MetaValue = int | float | bool | str | list["MetaValue"] | ArraySummary


@dataclass(frozen=True, slots=True)
class GgufTensor:
    """One tensor's record: ``dims`` as GGUF stores them (innermost first), ``start``/``end`` absolute
    file offsets of its data. ``ggml_type`` is the type's name, or ``"type<N>"`` for types not decoded.
    """

    name: str
    ggml_type: str
    dims: tuple[int, ...]
    file: str
    start: int
    end: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape as PyTorch and safetensors write it (outermost first)."""
        return tuple(reversed(self.dims))

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    @property
    def decodable(self) -> bool:
        return self.ggml_type in TYPE_BITS


@dataclass(frozen=True, slots=True)
class GgufHeader:
    """A parsed GGUF header: ``metadata`` (long arrays summarised), ``tensors`` in file order."""

    version: int
    metadata: dict[str, MetaValue]
    tensors: list[GgufTensor]
    alignment: int
    data_start: int
    header_bytes: int = field(default=0)

    def get_int(self, key: str) -> int | None:
        """An integer metadata value, or None when absent or not an integer."""
        v = self.metadata.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def get_str(self, key: str) -> str | None:
        v = self.metadata.get(key)
        return v if isinstance(v, str) else None


Read = Callable[[int, int], bytes]


class _Cursor:
    """Reads the header front to back, fetching more of the file whenever a field runs past the buffer."""

    def __init__(self, read: Read, label: str, size: int | None, prefix: bytes) -> None:
        self.read, self.label, self.size = read, label, size
        self.buf = bytearray(prefix)
        self.pos = 0
        self.chunk = max(FIRST_READ_BYTES, len(prefix))

    def fail(self, what: str) -> WeightFormatError:
        return WeightFormatError(f"{self.label}: not a valid GGUF file: {what} (at byte {self.pos})")

    def need(self, n: int) -> memoryview:
        end = self.pos + n
        if end > MAX_HEADER_BYTES:
            raise self.fail(f"the header runs past {MAX_HEADER_BYTES // 2**20} MiB")
        if self.size is not None and end > self.size:
            raise self.fail("the file ends inside its header")
        while len(self.buf) < end:
            want = max(self.chunk, end - len(self.buf))
            if self.size is not None:
                want = min(want, self.size - len(self.buf))
            more = self.read(len(self.buf), len(self.buf) + want)
            if not more:
                raise self.fail("the file ends inside its header")
            self.buf += more
            self.chunk = min(self.chunk * 2, 32 * 2**20)
        view = memoryview(self.buf)[self.pos : end]
        self.pos = end
        return view

    def u32(self) -> int:
        return int(_U32.unpack(self.need(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.need(8))[0])

    def string(self, limit: int = MAX_STRING_BYTES) -> str:
        n = self.u64()
        if n > limit:
            raise self.fail(f"a string of {n} bytes (the limit is {limit})")
        return as_name(bytes(self.need(n)).decode("utf-8", "backslashreplace"))

    def skip_string(self) -> None:
        n = self.u64()
        if n > MAX_STRING_BYTES:
            raise self.fail(f"a string of {n} bytes (the limit is {MAX_STRING_BYTES})")
        self.need(n)

    def value(self, vtype: int, depth: int = 0) -> MetaValue:
        if vtype in _SCALARS:
            s = _SCALARS[vtype]
            v = s.unpack(self.need(s.size))[0]
            return bool(v) if vtype == ValueType.BOOL else v
        if vtype == ValueType.STRING:
            return self.string()
        if vtype == ValueType.ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.fail(f"arrays nested deeper than {MAX_ARRAY_DEPTH}")
            item = self.u32()
            count = self.u64()
            if count > MAX_ARRAY_ITEMS:
                raise self.fail(f"an array of {count} items (the limit is {MAX_ARRAY_ITEMS})")
            name = ValueType(item).name if item in ValueType._value2member_map_ else f"type{item}"
            if count <= KEEP_ARRAY_ITEMS:
                return [self.value(item, depth + 1) for _ in range(count)]
            if item in _SCALARS:  # fixed size: skipped in one step
                self.need(count * _SCALARS[item].size)
            elif item == ValueType.STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                for _ in range(count):
                    self.value(item, depth + 1)
            return ArraySummary(name, count)
        raise self.fail(f"unknown metadata value type {vtype}")


def parse_header(read: Read, label: str, size: int | None, prefix: bytes = b"", file: str | None = None) -> GgufHeader:
    """Parse a GGUF header through ``read(start, end) -> bytes`` (``prefix``: bytes already read).

    ``label`` names the file in errors; ``size`` (when known) bounds every offset. Raises
    :class:`~provbot.detectors.errors.WeightFormatError` with one line for anything malformed.
    """
    c = _Cursor(read, label, size, prefix)
    if bytes(c.need(4)) != MAGIC:
        raise c.fail("it does not start with 'GGUF'")
    version = c.u32()
    if version not in (2, 3):
        if version and version & 0xFFFF == 0:
            raise c.fail("a big-endian GGUF file (only little-endian files are read)")
        raise c.fail(f"GGUF version {version} (versions 2 and 3 are read)")
    n_tensors, n_kv = c.u64(), c.u64()
    # Every record takes at least 8 bytes, so larger counts cannot fit in the header limit.
    if n_tensors > MAX_HEADER_BYTES // 24 or n_kv > MAX_HEADER_BYTES // 12:
        raise c.fail(f"{n_tensors} tensors and {n_kv} metadata entries claimed")
    metadata: dict[str, MetaValue] = {}
    for _ in range(n_kv):
        key = c.string(MAX_NAME_BYTES)
        vtype = c.u32()
        if key in metadata:
            raise c.fail(f"metadata key {key!r} appears twice")
        metadata[key] = c.value(vtype)
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or not 0 < alignment <= 2**16:
        raise c.fail(f"general.alignment {alignment!r}")
    if alignment & (alignment - 1):
        raise c.fail(f"general.alignment {alignment} is not a power of two")
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = c.string(MAX_NAME_BYTES)
        n_dims = c.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise c.fail(f"tensor {name!r} has {n_dims} dimensions")
        dims = tuple(c.u64() for _ in range(n_dims))
        ggml = c.u32()
        offset = c.u64()
        if any(d < 1 or d > 2**40 for d in dims) or math.prod(dims) > 2**48:
            raise c.fail(f"tensor {name!r} has dimensions {list(dims)}")
        infos.append((name, dims, ggml, offset))
    data_start = -(-c.pos // alignment) * alignment
    tensors: list[GgufTensor] = []
    seen: set[str] = set()
    where = file if file is not None else label
    for name, dims, ggml, offset in infos:
        if name in seen:
            raise c.fail(f"tensor {name!r} appears twice")
        seen.add(name)
        if offset % alignment:
            raise c.fail(f"tensor {name!r} starts at offset {offset}, not a multiple of {alignment}")
        t = GGML_TYPES.get(ggml) or _other_type(ggml)
        if t.block_size == 0:  # a type id nobody knows: kept by name, its extent unknown
            tensors.append(GgufTensor(name, t.name, dims, where, data_start + offset, data_start + offset))
            continue
        if dims[0] % t.block_size:
            raise c.fail(f"tensor {name!r}: rows of {dims[0]} values do not fill {t.name} blocks of {t.block_size}")
        nbytes = math.prod(dims) // t.block_size * t.block_bytes
        start = data_start + offset
        if size is not None and start + nbytes > size:
            raise c.fail(f"tensor {name!r} runs past the end of the file")
        tensors.append(GgufTensor(name, t.name, dims, where, start, start + nbytes))
    spans = sorted((t.start, t.end, t.name) for t in tensors if t.end > t.start)
    for (_, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise c.fail(f"tensors {n0!r} and {n1!r} overlap")
    return GgufHeader(version, metadata, tensors, int(alignment), data_start, c.pos)


def _other_type(ggml: int) -> GgmlType:
    """A type provbot does not decode, named and sized as llama.cpp's package knows it (block size
    0 when it does not know it either)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        q = GGMLQuantizationType(ggml)
        size, nbytes = GGML_QUANT_SIZES[q]
    except (ValueError, KeyError):
        return GgmlType(f"type{ggml}", 0, 0)
    return GgmlType(q.name, size, nbytes)


def block_span(t: GgufTensor, a: int, b: int) -> tuple[int, int, int]:
    """Bytes ``[start, end)`` holding elements ``[a, b)`` of ``t`` (flat, row-major), and the offset
    of element ``a`` among the values those bytes decode to. Reads are whole blocks.
    """
    g = _type(t)
    first, last = a // g.block_size, -(-b // g.block_size)
    return t.start + first * g.block_bytes, t.start + last * g.block_bytes, a - first * g.block_size


def decode_blocks(raw: bytes | bytearray | memoryview, ggml_type: str) -> np.ndarray:
    """Whole blocks of ``ggml_type`` as float32 values (one flat array)."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    if ggml_type == "F32":
        return buf.view("<f4").astype(np.float32)
    if ggml_type == "F16":
        return buf.view("<f2").astype(np.float32)
    if ggml_type == "BF16":
        return (buf.view("<u2").astype(np.uint32) << 16).view(np.float32)
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    out = dequantize(buf, GGMLQuantizationType[ggml_type])
    return np.asarray(out, dtype=np.float32).reshape(-1)


def _type(t: GgufTensor) -> GgmlType:
    for g in GGML_TYPES.values():
        if g.name == t.ggml_type:
            return g
    raise WeightFormatError(f"{t.file}: tensor {t.name!r} is of ggml type {t.ggml_type}, which is not decoded")


def _demo_file() -> bytes:
    """A one-tensor GGUF file built by hand (for the doctest above)."""

    def s(x: str) -> bytes:
        return _U64.pack(len(x)) + x.encode()

    head = MAGIC + _U32.pack(3) + _U64.pack(1) + _U64.pack(1)
    head += s("general.architecture") + _U32.pack(ValueType.STRING) + s("llama")
    head += s("token_embd.weight") + _U32.pack(2) + _U64.pack(4) + _U64.pack(2) + _U32.pack(0) + _U64.pack(0)
    head += b"\0" * (-len(head) % 32)
    return head + np.arange(8, dtype="<f4").tobytes()
