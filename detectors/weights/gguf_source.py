"""A GGUF checkpoint as a weight source: every tensor offered as float32, decoded from its blocks on read.

llama.cpp files (see :mod:`~provbot.detectors.weights.gguf_format`) store most matrices in quant
blocks, under their own names and, for Llama-family models, with the q/k rows reordered. This
source hides all three from the rest of the scan: it lays the decodable tensors out as a *virtual*
safetensors-like file (one per GGUF file, tensors in file order, under their Hugging Face names;
quantized ones as float32, F16/BF16/F32 ones in their own dtype), so the
planner, the sample reader and full reads work on it as on any safetensors checkpoint. A read of
virtual bytes becomes a read of the whole quant blocks holding those elements (row by row where the
rows were permuted), decoded. Byte and request counts are those of the real file.

Merged expert tensors (``blk.N.ffn_up_exps``, all experts in one) become one tensor per expert, as
transformers names them. Tensors of types not decoded are left out, and :attr:`GgufSource.notes`
says so.

>>> pick_gguf(["m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-m-f16.gguf", "m-BF16-00001-of-00002.gguf",
...            "m-BF16-00002-of-00002.gguf"])
['m-BF16-00001-of-00002.gguf', 'm-BF16-00002-of-00002.gguf']
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from provbot.detectors.declared import Declared
from provbot.detectors.errors import NotFoundError, WeightFormatError
from provbot.detectors.weights.buffers import Buffer
from provbot.detectors.weights.byte_ranges import ByteRange
from provbot.detectors.weights.gguf_format import (
    FIRST_READ_BYTES,
    FLOAT_TYPES,
    TYPE_BITS,
    GgufHeader,
    GgufTensor,
    block_span,
    decode_blocks,
    parse_header,
)
from provbot.detectors.weights.gguf_names import gguf_row, hf_name, rotary_heads
from provbot.detectors.weights.safetensors_format import TensorMeta
from provbot.detectors.weights.sources import WeightSource

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")
# Quant type tokens in file names, as llama.cpp's tools and the Hub's uploaders spell them.
_QUANT_IN_NAME = re.compile(r"(?i)(?<![A-Za-z0-9])(I?Q\d_[0-9A-Z_]+|I?Q\d|F32|F16|BF16)(?![A-Za-z0-9])")
_SKIP = ("mmproj", "imatrix")


def _name_bits(file: str) -> float:
    m = _QUANT_IN_NAME.search(file.rsplit("/", 1)[-1])
    if m is None:
        return 0.0
    token = m.group(1).upper()
    if token in TYPE_BITS:
        return TYPE_BITS[token]
    digits = re.search(r"\d", token)
    return float(digits.group()) if digits else 0.0


def pick_gguf(files: Sequence[str]) -> list[str]:
    """The GGUF model among ``files``: the most precise quantization by file name (a split model's
    parts together, in order); multimodal projectors and importance matrices are never picked."""
    groups: dict[str, list[str]] = {}
    for f in files:
        base = f.rsplit("/", 1)[-1]
        if not base.endswith(".gguf") or any(s in base.lower() for s in _SKIP):
            continue
        m = _SPLIT.match(f)
        groups.setdefault(m.group("stem") if m else f, []).append(f)
    if not groups:
        return []
    best = max(sorted(groups), key=lambda k: (_name_bits(groups[k][0]), -len(k)))
    return sorted(groups[best])


def split_series(files: Sequence[str]) -> list[str]:
    """Check that a split model's parts are all there (``-00001-of-0000N.gguf`` ... N)."""
    if len(files) == 1 and not _SPLIT.match(files[0]):
        return list(files)
    parts = [_SPLIT.match(f) for f in files]
    counts = {int(m.group("count")) for m in parts if m}
    if not all(parts) or len(counts) != 1:
        raise WeightFormatError(f"GGUF files {list(files)[:3]} are not one split model")
    count = counts.pop()
    have = sorted(int(m.group("part")) for m in parts if m)
    if have != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(have))
        raise NotFoundError(f"split GGUF model is missing part(s) {missing[:5]} of {count}")
    return sorted(files)


def series_of(file: str, files: Sequence[str]) -> list[str]:
    """``file`` and, when it is a part of a split model, the other parts among ``files``."""
    m = _SPLIT.match(file)
    if m is None:
        return [file]
    return sorted(f for f in files if (n := _SPLIT.match(f)) and n["stem"] == m["stem"] and n["count"] == m["count"])


@dataclass(frozen=True, slots=True)
class _Virtual:
    """A tensor as this source offers it: elements ``[first, first + numel)`` of GGUF tensor ``t``."""

    name: str
    t: GgufTensor
    first: int
    shape: tuple[int, ...]
    heads: int | None
    vstart: int

    @property
    def dtype(self) -> str:
        """Float tensors keep their own dtype (a cast is then seen as one); quant blocks decode to F32."""
        return self.t.ggml_type if self.t.ggml_type in FLOAT_TYPES else "F32"

    @property
    def itemsize(self) -> int:
        return 4 if self.dtype == "F32" else 2

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def vend(self) -> int:
        return self.vstart + self.itemsize * self.numel

    def encode(self, values: np.ndarray) -> bytes:
        """Decoded float32 ``values`` as this tensor's virtual bytes (exact: they came from that dtype)."""
        if self.dtype == "F16":
            return values.astype("<f2").tobytes()
        if self.dtype == "BF16":
            return (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        return values.astype("<f4").tobytes()


class GgufSource(WeightSource):
    """The GGUF model in ``files`` (one file or a split series), read through ``inner``'s raw reads.

    ``inner`` is the local folder or Hub repo holding the files; only its ``_read_one`` and
    ``_read_prefix`` are used, and its counters are this source's.
    """

    def __init__(self, inner: WeightSource, files: Sequence[str]) -> None:
        self.inner = inner
        super().__init__(inner.ref, inner.concurrency)
        self.gguf_files = split_series(files)
        self.headers: dict[str, GgufHeader] = {}
        self.notes: list[str] = []
        self._virtual: dict[str, list[_Virtual]] = {}
        self._starts: dict[str, list[int]] = {}

    # Counters are the inner source's: what crossed the wire or the disk, not the decoded floats.
    @property
    def bytes_read(self) -> int:
        return self.inner.bytes_read

    @bytes_read.setter
    def bytes_read(self, _value: int) -> None:
        pass

    @property
    def requests(self) -> int:
        return self.inner.requests

    @requests.setter
    def requests(self, _value: int) -> None:
        pass

    def _header_of(self, file: str) -> GgufHeader:
        if file not in self.headers:
            known = self.inner.known_prefix(file)
            prefix, size = known if known is not None else self.inner.raw_prefix(file, FIRST_READ_BYTES)
            seen = bytearray(prefix)  # the file's first bytes as parsing reads on: what a cache keeps

            def read(start: int, end: int) -> bytes:
                data = bytes(self.inner._read_one(file, start, end if size is None else min(end, size)))
                if start == len(seen):
                    seen.extend(data)
                return data

            label = f"{self.ref}/{file}"
            self.headers[file] = parse_header(read, label, size, prefix=bytes(prefix), file=file)
            if known is None or len(seen) > len(prefix):
                self.inner.keep_prefix(file, bytes(seen), size)
        return self.headers[file]

    @property
    def first_header(self) -> GgufHeader:
        return self._header_of(self.gguf_files[0])

    @property
    def architecture(self) -> str:
        return self.first_header.get_str("general.architecture") or "unknown"

    def config(self) -> dict:  # type: ignore[type-arg]
        """A config.json-like view of the GGUF metadata (architecture, sizes), for fingerprints."""
        inner = self.inner.config()
        if inner:
            return inner
        h, arch = self.first_header, self.architecture
        keys = {
            "num_hidden_layers": "block_count",
            "hidden_size": "embedding_length",
            "intermediate_size": "feed_forward_length",
            "num_attention_heads": "attention.head_count",
            "num_key_value_heads": "attention.head_count_kv",
            "max_position_embeddings": "context_length",
            "num_experts": "expert_count",
        }
        out: dict[str, object] = {"model_type": arch, "gguf": True}
        for name, key in keys.items():
            v = h.get_int(f"{arch}.{key}")
            if v is not None:
                out[name] = v
        return out

    def declared(self) -> Declared:
        return self.inner.declared()

    def _list_weight_files(self) -> tuple[list[str], dict[str, str] | None]:
        return list(self.gguf_files), None

    def _read_prefix(self, file: str, n: int) -> tuple[bytes, int | None]:
        raise WeightFormatError(f"{self.ref}/{file}: a GGUF file has no safetensors header")

    def tensors(self) -> dict[str, TensorMeta]:
        if self._tensors is None:
            headers = self._map(self._header_of, self.gguf_files)
            arch = self.architecture
            first = headers[0]
            n_blocks = first.get_int(f"{arch}.block_count") or 0
            n_head = first.get_int(f"{arch}.attention.head_count")
            n_kv = first.get_int(f"{arch}.attention.head_count_kv")
            moe = bool(first.get_int(f"{arch}.expert_count"))
            out: dict[str, TensorMeta] = {}
            undecoded: dict[str, int] = {}
            unnamed: list[str] = []
            for file, h in zip(self.gguf_files, headers):
                virtual: list[_Virtual] = []
                pos = 0
                for t in h.tensors:
                    if not t.decodable:
                        undecoded[t.ggml_type] = undecoded.get(t.ggml_type, 0) + 1
                        continue
                    name = hf_name(t.name, arch, n_blocks, moe)
                    if name is None:
                        unnamed.append(t.name)
                        name = t.name
                    heads = rotary_heads(t.name, arch, n_head, n_kv)
                    if heads and (t.shape[0] % heads or (t.shape[0] // heads) % 2):
                        raise WeightFormatError(f"{self.ref}/{file}: {t.name} has {t.shape[0]} rows for {heads} heads")
                    for vname, first_el, shape in _split_experts(name, t):
                        v = _Virtual(vname, t, first_el, shape, heads, pos)
                        pos = v.vend
                        if vname in out:
                            raise WeightFormatError(f"{self.ref}: tensor {vname!r} appears twice")
                        out[vname] = TensorMeta(vname, v.dtype, shape, file, v.vstart, v.vend)
                        virtual.append(v)
                self._virtual[file] = virtual
                self._starts[file] = [v.vstart for v in virtual]
            if not out:
                raise WeightFormatError(f"{self.ref}: the GGUF file holds no tensor provbot can decode")
            types = self.stored_types()
            summary = ", ".join(f"{n} {k}" for k, n in sorted(types.items(), key=lambda kv: -kv[1]))
            self.notes.append(f"{self.ref} is a GGUF file ({arch}; {summary}), decoded from its blocks")
            if undecoded:
                what = ", ".join(f"{n} of ggml {k}" for k, n in sorted(undecoded.items()))
                self.notes.append(f"{self.ref}: {what} tensor(s) are of types provbot does not decode: left out")
            if unnamed:
                self.notes.append(
                    f"{self.ref}: {len(unnamed)} GGUF tensor name(s) have no Hugging Face name, e.g. {unnamed[0]}"
                )
            self._tensors = out
        return self._tensors

    def stored_types(self) -> dict[str, int]:
        """How many of the offered tensors each ggml type stores."""
        counts: dict[str, int] = {}
        for vs in self._virtual.values():
            for v in vs:
                counts[v.t.ggml_type] = counts.get(v.t.ggml_type, 0) + 1
        return counts

    def quantized(self) -> dict[str, int]:
        """Tensors (their offered names) stored in quant blocks, with their bits (4 for Q4_K, ...)."""
        return {
            v.name: int(TYPE_BITS[v.t.ggml_type])
            for vs in self._virtual.values()
            for v in vs
            if v.t.ggml_type not in FLOAT_TYPES
        }

    def _pieces(self, file: str, start: int, end: int) -> list[tuple[_Virtual, int, int]]:
        """The tensors virtual bytes ``[start, end)`` of ``file`` cover: (tensor, first, end element)."""
        self.tensors()
        virtual, starts = self._virtual.get(file), self._starts.get(file)
        if virtual is None or starts is None:
            raise WeightFormatError(f"{self.ref}/{file}: not a GGUF file of this model")
        out: list[tuple[_Virtual, int, int]] = []
        i = max(0, bisect_right(starts, start) - 1)
        pos = start
        while pos < end:
            if i >= len(virtual) or virtual[i].vstart > pos:
                raise WeightFormatError(f"{self.ref}/{file}: read of {start}-{end} is outside the tensors")
            v = virtual[i]
            stop = min(end, v.vend)
            if (pos - v.vstart) % v.itemsize or (stop - v.vstart) % v.itemsize:
                raise WeightFormatError(f"{self.ref}/{file}: read of {start}-{end} splits a value of {v.name}")
            out.append((v, (pos - v.vstart) // v.itemsize, (stop - v.vstart) // v.itemsize))
            pos = stop
            i += 1
        return out

    def read_ranges(self, ranges: Sequence[ByteRange], gap_bytes: int = 0) -> list[Buffer]:
        """Virtual ranges read as the quant blocks holding them, all in one batch of real ranges (so
        the inner source joins and bridges them as it does for safetensors), then decoded."""
        real: list[ByteRange] = []
        # Per range, per covered tensor: (tensor, [(index into real, skip, count)]).
        plan: list[list[tuple[_Virtual, list[tuple[int, int, int]]]]] = []
        for file, start, end in ranges:
            if end < start or start < 0:
                raise ValueError(f"bad range {start}-{end} of {file}")
            covered = []
            for v, a, b in self._pieces(file, start, end):
                spans = []
                for s, e in _gguf_spans(v, a, b):
                    bs, be, skip = block_span(v.t, s, e)
                    spans.append((len(real), skip, e - s))
                    real.append((v.t.file, bs, be))
                covered.append((v, spans))
            plan.append(covered)
        blobs = self.inner.read_ranges(real, gap_bytes=gap_bytes) if real else []
        out: list[Buffer] = []
        for covered in plan:
            parts = []
            for v, spans in covered:
                values = [decode_blocks(blobs[k], v.t.ggml_type)[skip : skip + n] for k, skip, n in spans]
                parts.append(v.encode(values[0] if len(values) == 1 else np.concatenate(values)))
            out.append(parts[0] if len(parts) == 1 else b"".join(parts))
        return out

    def _read_one(self, file: str, start: int, end: int) -> bytes:
        return bytes(self.read_ranges([(file, start, end)])[0])

    def close(self) -> None:
        self.inner.close()


def _split_experts(name: str, t: GgufTensor) -> list[tuple[str, int, tuple[int, ...]]]:
    """``(name, first element, shape)`` per tensor offered: merged experts one per expert."""
    m = re.match(r"^(?P<pre>.*\.experts)\.(?P<proj>[^.]+)\.weight$", name)
    if m is None or len(t.shape) != 3:
        return [(name, 0, t.shape)]
    n, rows, cols = t.shape
    return [(f"{m['pre']}.{e}.{m['proj']}.weight", e * rows * cols, (rows, cols)) for e in range(n)]


def _gguf_spans(v: _Virtual, a: int, b: int) -> list[tuple[int, int]]:
    """Runs of GGUF elements holding elements ``[a, b)`` of ``v`` (Hugging Face order), in that order:
    one run, or one per row where llama.cpp permuted the rows."""
    if not v.heads:
        return [(v.first + a, v.first + b)]
    cols = math.prod(v.shape[1:])
    head_dim = v.shape[0] // v.heads
    spans = []
    pos = a
    while pos < b:
        row, col = divmod(pos, cols)
        stop = min(b, (row + 1) * cols)
        g = v.first + gguf_row(row, head_dim) * cols + col
        spans.append((g, g + stop - pos))
        pos = stop
    return spans
