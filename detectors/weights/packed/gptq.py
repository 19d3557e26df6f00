"""GPTQ (AutoGPTQ / GPTQModel ``gptq`` checkpoint format): ``qweight``, ``qzeros``, ``scales``, ``g_idx``.

* ``qweight`` int32 ``[in * bits / 32, out]``: packed along the input dimension, lowest bits first
  (field ``j`` of row ``r`` is input ``r * 32 / bits + j``);
* ``qzeros`` int32 ``[groups, out * bits / 32]``: packed along the output dimension, each zero
  stored minus one (format v1, what the Hub holds; ``checkpoint_format: gptq_v2`` stores it as is);
* ``scales`` float ``[groups, out]``; ``g_idx`` int32 ``[in]``: each input's group (act-order),
  ``i // group_size`` when absent.

``W[o, i] = scales[g, o] * (q[i, o] - zero[g, o])`` with ``g = g_idx[i]``. Bits 2, 4 and 8 (3-bit
packs across words and is left undecoded, as are Marlin/bitblas repackings). The bits and group
size follow from the shapes (``quantization_config``'s group size is taken when they allow it).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.packed.base import (
    PackedFormat,
    PackedMeta,
    check_shape,
    config_int,
    dequantize_rows,
    group_size,
    register,
    unpack_low_first,
)
from provbot.detectors.weights.safetensors_format import FLOAT_DTYPES, TensorMeta

# Input rows decoded at a time: bounds the int32/float32 working copies of a big matrix.
_ROWS = 2048


def find(tensors: Mapping[str, TensorMeta], q: Mapping[str, object], values: Mapping[str, bytes]) -> list[PackedMeta]:
    """GPTQ weights in ``tensors``: every ``<module>.qweight`` whose companions fit its shape."""
    if q.get("quant_method") not in (None, "gptq") or q.get("checkpoint_format") not in (None, "gptq", "gptq_v2"):
        return []
    offset = 0 if q.get("checkpoint_format") == "gptq_v2" else 1
    out = []
    for name, qw in tensors.items():
        if not name.endswith(".qweight") or not isinstance(qw, TensorMeta):
            continue
        module = name.removesuffix(".qweight")
        zeros, scales, g_idx = (tensors.get(module + s) for s in (".qzeros", ".scales", ".g_idx"))
        if not (isinstance(zeros, TensorMeta) and isinstance(scales, TensorMeta)):
            continue
        if qw.dtype != "I32" or zeros.dtype != "I32" or scales.dtype not in FLOAT_DTYPES:
            continue
        if len(qw.shape) != 2 or len(zeros.shape) != 2 or len(scales.shape) != 2:
            continue
        groups, n_out = scales.shape
        if qw.shape[1] != n_out or n_out == 0 or groups == 0 or zeros.shape[0] != groups:
            continue  # AWQ (packed along the output) or something else
        bits, rem = divmod(32 * zeros.shape[1], n_out)
        if rem or bits not in (2, 4, 8) or config_int(q, "bits") not in (None, bits):
            continue
        n_in = qw.shape[0] * 32 // bits
        size = group_size(n_in, groups, config_int(q, "group_size"))
        if size is None:
            continue
        parts = {"qweight": qw, "qzeros": zeros, "scales": scales}
        if isinstance(g_idx, TensorMeta) and g_idx.dtype in ("I32", "I64") and g_idx.shape == (n_in,):
            parts["g_idx"] = g_idx
        out.append(
            PackedMeta(module + ".weight", "gptq", (n_out, n_in), bits, size, parts, "qweight", {"zero_offset": offset})
        )
    return out


def decode(meta: PackedMeta, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``[out, in]`` float32 weight (see the module docstring for the layout)."""
    n_out, n_in = meta.shape
    bits, per = meta.bits, 32 // meta.bits
    check_shape(meta.parts["qweight"], (n_in // per, n_out), "packed weight")
    groups = meta.parts["scales"].shape[0]
    zeros = unpack_low_first(parts["qzeros"], bits, dim=1)
    zeros = (zeros + int(meta.options.get("zero_offset", 1))) & ((1 << bits) - 1)  # v1: stored minus one, wrapping
    scales = parts["scales"].to(torch.float32)
    size = meta.group_size
    g = None
    if "g_idx" in parts:
        g = parts["g_idx"].to(torch.int64)
        if g.numel() and (int(g.min()) < 0 or int(g.max()) >= groups):
            raise WeightFormatError(f"{meta.parts['g_idx'].name}: group index outside 0..{groups - 1}")
        if torch.equal(g, torch.arange(n_in) // size):
            g = None  # act-order off: rows are in group order
    if g is None and (n_in % size or _ROWS % size):  # blocks would split groups: give each row its group
        g = torch.arange(n_in) // size
    w = torch.empty(n_out, n_in, dtype=torch.float32)
    for r0 in range(0, n_in // per, _ROWS // per):
        q = unpack_low_first(parts["qweight"][r0 : r0 + _ROWS // per], bits, dim=0)  # [inputs of these rows, out]
        w[:, r0 * per : r0 * per + q.shape[0]] = dequantize_rows(q, zeros, scales, r0 * per, size, g).T
    return w


register(PackedFormat("gptq", find, decode))
