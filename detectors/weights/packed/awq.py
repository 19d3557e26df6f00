"""AWQ (AutoAWQ GEMM format, ``quant_method: awq``): ``qweight``, ``qzeros``, ``scales``.

* ``qweight`` int32 ``[in, out / 8]``: 4-bit fields packed along the *output* dimension in AWQ's
  interleaved order (field ``p`` of word ``c`` is output ``8c + [0, 2, 4, 6, 1, 3, 5, 7][p]``);
* ``qzeros`` int32 ``[groups, out / 8]``, packed the same way, zeros as they are;
* ``scales`` float ``[groups, out]``; input ``i`` is in group ``i // group_size``.

``W[o, i] = (q[i, o] - zero[g, o]) * scales[g, o]``. Only 4 bits (the one width AWQ's GEMM layout
defines); GEMV and Marlin repackings are left undecoded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from detectors.weights.packed import PackedFormat, PackedMeta, check_shape, register
from detectors.weights.packed.gptq import _int_config
from detectors.weights.safetensors_format import FLOAT_DTYPES, TensorMeta

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
        if qw.dtype != "I32" or zeros.dtype != "I32" or scales.dtype not in FLOAT_DTYPES or module + ".g_idx" in tensors:
            continue
        if len(qw.shape) != 2 or len(zeros.shape) != 2 or len(scales.shape) != 2:
            continue
        groups, n_out = scales.shape
        n_in = qw.shape[0]
        if n_out == 0 or groups == 0 or n_in == 0 or qw.shape[1] * 8 != n_out or zeros.shape != (groups, n_out // 8):
            continue
        if _int_config(q, "bits") not in (None, 4):
            continue
        size = _int_config(q, "group_size")
        if size is None or size <= 0 or math.ceil(n_in / size) != groups:
            size = math.ceil(n_in / groups)
            if math.ceil(n_in / size) != groups:
                continue
        out.append(PackedMeta(module + ".weight", "awq", (n_out, n_in), 4, size,
                              {"qweight": qw, "qzeros": zeros, "scales": scales}, "qweight"))
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
    in_order = n_in % size == 0 and _ROWS % size == 0  # whole groups per block: broadcast, not gathered
    w = torch.empty(n_out, n_in, dtype=torch.float32)
    for r0 in range(0, n_in, _ROWS):
        q = _unpack(parts["qweight"][r0:r0 + _ROWS])
        k = q.shape[0]
        if in_order:
            g0, n = r0 // size, k // size
            v = (q.view(n, size, n_out) - zeros[g0:g0 + n, None]).to(torch.float32).mul_(scales[g0:g0 + n, None])
            w[:, r0:r0 + k] = v.view(k, n_out).T
        else:
            g = torch.arange(r0, r0 + k) // size
            w[:, r0:r0 + k] = ((q - zeros[g]).to(torch.float32) * scales[g]).T
    return w


register(PackedFormat("awq", find, decode))
