"""AWQ (AutoAWQ GEMM format, ``quant_method: awq``): ``qweight``, ``qzeros``, ``scales``.

* ``qweight`` int32 ``[in, out / 8]``: 4-bit fields packed along the *output* dimension in AWQ's
  interleaved order (field ``p`` of word ``c`` is output ``8c + [0, 2, 4, 6, 1, 3, 5, 7][p]``);
* ``qzeros`` int32 ``[groups, out / 8]``, packed the same way, zeros as they are;
* ``scales`` float ``[groups, out]``; input ``i`` is in group ``i // group_size``.

``W[o, i] = (q[i, o] - zero[g, o]) * scales[g, o]``. Only 4 bits (the one width AWQ's GEMM layout
defines); GEMV and Marlin repackings are left undecoded.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from provbot.detectors.weights.packed.base import (
    PackedFormat,
    PackedMeta,
    check_shape,
    config_int,
    dequantize_rows,
    group_size,
    register,
)
from provbot.detectors.weights.safetensors_format import FLOAT_DTYPES, TensorMeta

# Bit offset of output k (0..7 in its word): its field is the inverse of AWQ's order, 4 bits each.
_SHIFT_OF_OUTPUT = 4 * torch.tensor([0, 4, 1, 5, 2, 6, 3, 7], dtype=torch.int32)
_ROWS = 2048


def find(tensors: Mapping[str, TensorMeta], q: Mapping[str, object], values: Mapping[str, bytes]) -> list[PackedMeta]:
    """AWQ weights in ``tensors``: every ``<module>.qweight`` packed along the output dimension."""
    if q.get("quant_method") not in (None, "awq") or str(q.get("version", "gemm")).lower() != "gemm":
        return []
    out = []
    for name, qw in tensors.items():
        if not name.endswith(".qweight") or not isinstance(qw, TensorMeta):
            continue
        module = name.removesuffix(".qweight")
        zeros, scales = tensors.get(module + ".qzeros"), tensors.get(module + ".scales")
        if not (isinstance(zeros, TensorMeta) and isinstance(scales, TensorMeta)):
            continue
        if (
            qw.dtype != "I32"
            or zeros.dtype != "I32"
            or scales.dtype not in FLOAT_DTYPES
            or module + ".g_idx" in tensors
        ):
            continue
        if len(qw.shape) != 2 or len(zeros.shape) != 2 or len(scales.shape) != 2:
            continue
        groups, n_out = scales.shape
        n_in = qw.shape[0]
        if n_out == 0 or groups == 0 or n_in == 0 or qw.shape[1] * 8 != n_out or zeros.shape != (groups, n_out // 8):
            continue
        if config_int(q, "bits") not in (None, 4):
            continue
        size = group_size(n_in, groups, config_int(q, "group_size"))
        if size is None:
            continue
        out.append(
            PackedMeta(
                module + ".weight",
                "awq",
                (n_out, n_in),
                4,
                size,
                {"qweight": qw, "qzeros": zeros, "scales": scales},
                "qweight",
            )
        )
    return out


def _unpack(words: torch.Tensor) -> torch.Tensor:
    """``[rows, out / 8]`` words -> ``[rows, out]`` 4-bit values in output order (each output
    shifted out of its own field: no reordering pass)."""
    return ((words.unsqueeze(-1) >> _SHIFT_OF_OUTPUT) & 15).reshape(words.shape[0], -1)


def decode(meta: PackedMeta, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``[out, in]`` float32 weight (see the module docstring for the layout)."""
    n_out, n_in = meta.shape
    check_shape(meta.parts["qweight"], (n_in, n_out // 8), "packed weight")
    zeros = _unpack(parts["qzeros"])
    scales = parts["scales"].to(torch.float32)
    size = meta.group_size
    g = torch.arange(n_in) // size if n_in % size or _ROWS % size else None  # None: blocks of whole groups
    w = torch.empty(n_out, n_in, dtype=torch.float32)
    for r0 in range(0, n_in, _ROWS):
        q = _unpack(parts["qweight"][r0 : r0 + _ROWS])
        w[:, r0 : r0 + q.shape[0]] = dequantize_rows(q, zeros, scales, r0, size, g).T
    return w


register(PackedFormat("awq", find, decode))
