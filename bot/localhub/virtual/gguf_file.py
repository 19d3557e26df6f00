"""A virtual llama.cpp GGUF file: a header generated once, then tensor blocks computed per range.

The file is what ``convert_hf_to_gguf.py`` followed by ``llama-quantize`` would make of a virtual
safetensors repo: llama.cpp tensor names, q/k rows of Llama permuted, 1-D tensors (norms) kept F32,
matrices Q4_K, and a matrix whose rows fill no 256-value block falls back to Q5_0 as llama-quantize
does. A byte range costs only the quantization blocks it touches.

>>> from provbot.bot.localhub.virtual.spec import BaseRecipe
>>> tensors = [("model.embed_tokens.weight", (4, 256)), ("model.norm.weight", (256,))]
>>> f = VirtualGguf("v/a", {"v/a": BaseRecipe(seed=1)}, tensors, {"block_count": 0}, "a")
>>> f.read(0, 4), f.size - f.data_start
(b'GGUF', 1600)
>>> f.read(f.data_start, f.size) == f.read(f.data_start, f.data_start + 700) + f.read(f.data_start + 700, f.size)
True
"""

from __future__ import annotations

import bisect
import math
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import gguf
import numpy as np

from .q4k import BLOCK_BYTES, BLOCK_VALUES, q4_k_blocks
from .values import Recipes, values

ALIGNMENT = 32
# ggml type ids and their (values, bytes) per block, from llama.cpp's ggml.h.
F32, Q5_0, Q4_K = 0, 6, 12
BLOCKS = {F32: (1, 4), Q5_0: (32, 22), Q4_K: (BLOCK_VALUES, BLOCK_BYTES)}
FILE_TYPE_Q4_K_S = 14  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_S
_U32, _F32, _STRING = 4, 6, 8  # GGUF metadata value types


class _Span(NamedTuple):
    hf: str  # the Hugging Face tensor the values come from
    rows: int
    cols: int
    ggml: int
    first: int  # first byte in the data section
    nbytes: int
    heads: int  # rotary heads whose rows llama.cpp interleaves; 0 for none


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, value: int | float | str) -> bytes:
    if isinstance(value, str):
        return _string(key) + struct.pack("<I", _STRING) + _string(value)
    if isinstance(value, float):
        return _string(key) + struct.pack("<If", _F32, value)
    return _string(key) + struct.pack("<II", _U32, value)


def gguf_row_source(row: int, rows: int, heads: int) -> int:
    """The Hugging Face row that llama.cpp's q/k permutation puts at GGUF row ``row``.

    >>> [gguf_row_source(g, 8, 2) for g in range(8)]
    [0, 2, 1, 3, 4, 6, 5, 7]
    """
    per_head = rows // heads
    head, rem = divmod(row, per_head)
    return head * per_head + (rem % 2) * (per_head // 2) + rem // 2


class VirtualGguf:
    """Byte view of a GGUF holding ``repo``'s values of ``tensors`` (Hugging Face names and shapes).

    ``arch_keys`` are the ``llama.*`` metadata integers (block_count, head_count, ...).
    """

    def __init__(
        self,
        repo: str,
        recipes: Recipes,
        tensors: Sequence[tuple[str, Sequence[int]]],
        arch_keys: Mapping[str, int],
        name: str,
    ) -> None:
        self.repo, self.recipes = repo, recipes
        n_blocks = arch_keys.get("block_count", 0)
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
        n_head, n_kv = arch_keys.get("attention.head_count", 1), arch_keys.get("attention.head_count_kv", 1)
        kvs = [
            _kv("general.architecture", "llama"),
            _kv("general.name", name),
            _kv("general.file_type", FILE_TYPE_Q4_K_S),
            _kv("general.quantization_version", 2),
            _kv("general.alignment", ALIGNMENT),
            *(_kv(f"llama.{k}", v) for k, v in arch_keys.items()),
            _kv("llama.attention.layer_norm_rms_epsilon", 1e-5),
        ]
        infos: list[bytes] = []
        self._spans: list[_Span] = []
        offset = 0
        for hf, shape in tensors:  # the converter keeps the checkpoint's order
            gname = names.get_name(hf, try_suffixes=(".weight", ".bias"))
            if gname is None:
                raise ValueError(f"{hf}: no llama.cpp name")
            rows, cols = (1, shape[0]) if len(shape) == 1 else (math.prod(shape[:-1]), shape[-1])
            ggml = F32 if len(shape) == 1 else Q4_K if cols % BLOCK_VALUES == 0 else Q5_0
            per, size = BLOCKS[ggml]
            if cols % per:
                raise ValueError(f"{hf}: rows of {cols} values fill no {per}-value block")
            heads = n_head if hf.endswith("q_proj.weight") else n_kv if hf.endswith("k_proj.weight") else 0
            nbytes = rows * cols // per * size
            dims = list(reversed(shape))  # ggml lists the row length first
            infos.append(
                _string(gname) + struct.pack(f"<I{len(dims)}Q", len(dims), *dims) + struct.pack("<IQ", ggml, offset)
            )
            self._spans.append(_Span(hf, rows, cols, ggml, offset, nbytes, heads))
            offset += nbytes + (-nbytes % ALIGNMENT)
        head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
        head += b"\0" * (-len(head) % ALIGNMENT)
        self._head = head
        self.data_start = len(head)
        last = self._spans[-1] if self._spans else None
        self.size = len(head) + (last.first + last.nbytes if last else 0)
        self._starts = [s.first for s in self._spans]

    @property
    def parameters(self) -> int:
        return sum(s.rows * s.cols for s in self._spans)

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)``: only the blocks overlapping the range are computed."""
        stop = min(stop, self.size)
        out = bytearray(self._head[start:stop])
        base = self.data_start
        pos = max(start, base)  # the next byte to append
        i = max(0, bisect.bisect_right(self._starts, pos - base) - 1)
        for span in self._spans[i:]:
            if span.first >= stop - base:
                break
            lo, hi = max(pos - base, span.first), min(stop - base, span.first + span.nbytes)
            if lo > pos - base:  # alignment padding before this tensor
                out += bytes(lo - (pos - base))
            if lo < hi:
                out += self._tensor_bytes(span, lo - span.first, hi - span.first)
                pos = base + hi
        if pos < stop:
            out += bytes(stop - pos)  # padding after the last tensor read
        return bytes(out)

    def _tensor_bytes(self, span: _Span, lo: int, hi: int) -> bytes:
        per, size = BLOCKS[span.ggml]
        b0, b1 = lo // size, -(-hi // size)
        x = self._values(span, b0 * per, b1 * per)
        if span.ggml == F32:
            raw = x.astype("<f4").tobytes()
        elif span.ggml == Q4_K:
            raw = q4_k_blocks(x).tobytes()
        else:
            raw = gguf.quants.quantize(x.reshape(-1, per), gguf.GGMLQuantizationType.Q5_0).tobytes()
        return raw[lo - b0 * size : hi - b0 * size]

    def _values(self, span: _Span, e0: int, e1: int) -> np.ndarray:
        """Values of GGUF elements ``[e0, e1)`` of a tensor (rows in llama.cpp's order)."""
        if not span.heads:
            return values(self.repo, self.recipes, span.hf, e0, e1)
        parts = []
        cols = span.cols
        for row in range(e0 // cols, -(-e1 // cols)):
            c0, c1 = max(e0 - row * cols, 0), min(e1 - row * cols, cols)
            src = gguf_row_source(row, span.rows, span.heads) * cols
            parts.append(values(self.repo, self.recipes, span.hf, src + c0, src + c1))
        return np.concatenate(parts)
