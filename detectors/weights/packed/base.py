"""What every packed format shares: the registry, the packed-weight record and the decoding helpers."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.safetensors_format import TensorMeta, view

#: A packed format's own settings (block sizes, offsets, quant type), as read from the checkpoint.
OptionValue = int | float | str | bool


@dataclass(frozen=True, eq=False)
class PackedMeta:
    """One packed weight: its logical ``[out, in]`` shape and the tensors (``parts``) that hold it.

    ``file``/``start``/``end`` are those of the packed integers (``parts[main]``), so readers that
    order tensors by file position keep working; ``dtype`` names the format (``GPTQ-INT4``), which
    is no safetensors dtype: nothing reads a packed weight's bytes as values directly.
    """

    name: str
    format: str
    shape: tuple[int, int]
    bits: int
    group_size: int
    parts: Mapping[str, TensorMeta]
    main: str
    options: Mapping[str, OptionValue] = field(default_factory=dict)

    @property
    def dtype(self) -> str:
        return f"{self.format.upper()}-INT{self.bits}"

    @property
    def file(self) -> str:
        return self.parts[self.main].file

    @property
    def start(self) -> int:
        return self.parts[self.main].start

    @property
    def end(self) -> int:
        return self.parts[self.main].end

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.parts.values())


@dataclass(frozen=True)
class PackedFormat:
    """A registered format: ``find`` groups a table's tensors, ``decode`` turns one group into floats.

    ``find(tensors, quantization_config, values)`` returns the format's weights found in
    ``tensors`` (``{name: TensorMeta}``, canonical names); ``values`` holds the raw bytes of the
    small tensors ``state_tensors(tensors)`` names, for a format whose shapes are stored as data
    (bitsandbytes). ``decode(meta, parts)`` gets each part as a tensor of its stored dtype and
    shape and returns the ``[out, in]`` float32 weight.
    """

    name: str
    find: Callable[[Mapping[str, TensorMeta], Mapping[str, object], Mapping[str, bytes]], list[PackedMeta]]
    decode: Callable[[PackedMeta, dict[str, torch.Tensor]], torch.Tensor]
    state_tensors: Callable[[Mapping[str, TensorMeta]], list[str]] | None = None


FORMATS: dict[str, PackedFormat] = {}


def register(fmt: PackedFormat) -> PackedFormat:
    """Add a format to :data:`FORMATS` (a second one of the same name replaces it)."""
    FORMATS[fmt.name] = fmt
    return fmt


def quantization_config(config: Mapping[str, object]) -> dict[str, object]:
    """The ``quantization_config`` of a config.json (``{}`` when absent or not an object)."""
    q = config.get("quantization_config") if isinstance(config, Mapping) else None
    return q if isinstance(q, dict) else {}


#: Reads the bytes of a few small tensors (a source's ``read_ranges`` over their spans).
SmallReader = Callable[[list[TensorMeta]], list[bytes]]


def with_packed(
    tensors: Mapping[str, TensorMeta], config: Mapping[str, object], read: SmallReader | None = None
) -> dict[str, TensorMeta | PackedMeta]:
    """``tensors`` with each decodable packed group replaced by a :class:`PackedMeta` named
    ``<module>.weight``. A model without packed weights comes back as it is (a new dict).
    ``read`` fetches the small state tensors some formats keep their shapes in; without it those
    formats find nothing."""
    qconfig = quantization_config(config)
    out: dict[str, TensorMeta | PackedMeta] = dict(tensors)
    key_of = {id(m): k for k, m in out.items()}  # parts keep their raw names; the table is keyed otherwise
    for fmt in FORMATS.values():
        values: dict[str, bytes] = {}
        if fmt.state_tensors is not None:
            names = fmt.state_tensors(out) if read is not None else []  # type: ignore[arg-type]
            if not names:
                continue
            values = dict(zip(names, read([out[n] for n in names])))  # type: ignore[misc]
        for meta in fmt.find(out, qconfig, values):  # type: ignore[arg-type]  # earlier formats' PackedMetas are skipped
            if meta.name in out and not any(out[meta.name] is p for p in meta.parts.values()):
                continue  # a weight of that name besides the group: ambiguous, leave the group alone
            for part in meta.parts.values():
                out.pop(key_of[id(part)], None)
            out[meta.name] = meta
    return out


def decode(meta: PackedMeta, blobs: Mapping[str, bytes | bytearray | memoryview]) -> torch.Tensor:
    """The ``[out, in]`` float32 weight of ``meta`` from the raw bytes of each of its parts."""
    parts = {}
    for role, m in meta.parts.items():
        raw = blobs[role]
        if len(raw) != m.nbytes:
            raise WeightFormatError(f"{m.name}: got {len(raw)} bytes, expected {m.nbytes}")
        parts[role] = view(raw, m.dtype).reshape(m.shape)
    w = FORMATS[meta.format].decode(meta, parts)
    if tuple(w.shape) != meta.shape:  # a decoder's own check failed to catch an inconsistency
        raise WeightFormatError(f"{meta.name}: decoded to {list(w.shape)}, expected {list(meta.shape)}")
    return w


def unpack_low_first(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Unpack ``32 // bits`` unsigned fields per int32 of a 2-D tensor along ``dim`` (0 or 1),
    lowest bits first: ``[r, c]`` becomes ``[r * 32 / bits, c]`` or ``[r, c * 32 / bits]``.

    >>> unpack_low_first(torch.tensor([[0x76543210]], dtype=torch.int32), 4, 1)
    tensor([[0, 1, 2, 3, 4, 5, 6, 7]], dtype=torch.int32)
    """
    if bits < 1 or 32 % bits:
        raise WeightFormatError(f"{bits}-bit fields do not pack evenly into 32 bits")
    rows, cols = words.shape
    per, mask = 32 // bits, (1 << bits) - 1
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    # Arithmetic shifts of negative words bring ones in from the left; the mask drops them. The
    # fields land next to their word's neighbours directly: no transposed copies (half the time).
    if dim == 0:
        return ((words.unsqueeze(1) >> shifts[None, :, None]) & mask).reshape(rows * per, cols)
    return ((words.unsqueeze(-1) >> shifts) & mask).reshape(rows, cols * per)


def config_int(q: Mapping[str, object], key: str) -> int | None:
    """An integer setting of ``quantization_config`` (None when absent or not an integer)."""
    v = q.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def group_size(n_in: int, groups: int, configured: int | None) -> int | None:
    """Inputs per group: the configured size when the shapes allow it, else what ``groups`` groups
    of ``n_in`` inputs imply (no size, -1 for one group, or one the shapes deny); None if neither fits.

    >>> group_size(4096, 32, 128), group_size(4096, 1, -1), group_size(100, 4, 32), group_size(100, 4, None)
    (128, 4096, 32, 25)
    >>> group_size(5, 4, None) is None   # 4 groups of 2 would need 7 or 8 inputs
    True
    """
    if configured is not None and configured > 0 and math.ceil(n_in / configured) == groups:
        return configured
    size = math.ceil(n_in / groups)
    return size if math.ceil(n_in / size) == groups else None


def dequantize_rows(
    q: torch.Tensor,
    zeros: torch.Tensor,
    scales: torch.Tensor,
    first: int,
    size: int,
    groups_of: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(q - zero) * scale`` for input rows ``first .. first + len(q)`` of a ``[in, out]`` layout
    whose zeros and scales are ``[groups, out]``: ``groups_of`` gives each row's group (act-order);
    None means rows in group order, where whole groups broadcast against their zero and scale rows
    (about 4x faster than gathering one zero and one scale per element; ``first`` and ``len(q)``
    are then whole groups).

    >>> q = torch.tensor([[3], [3], [5], [5]], dtype=torch.int32)
    >>> dequantize_rows(q, torch.tensor([[1], [2]]), torch.tensor([[1.0], [10.0]]), 0, 2).flatten().tolist()
    [2.0, 2.0, 30.0, 30.0]
    """
    if groups_of is None:
        g0, n = first // size, q.shape[0] // size
        v = (q.view(n, size, -1) - zeros[g0 : g0 + n, None]).to(torch.float32).mul_(scales[g0 : g0 + n, None])
        return v.view(q.shape)
    gi = groups_of[first : first + q.shape[0]]
    return (q - zeros[gi]).to(torch.float32) * scales[gi]


def check_shape(meta: TensorMeta, expected: tuple[int, ...], what: str) -> None:
    """A part's shape must be what the weight's other parts imply."""
    if tuple(meta.shape) != tuple(expected):
        raise WeightFormatError(f"{meta.name}: {what} shape {list(meta.shape)}, expected {list(expected)}")


# The formats register themselves on import.
