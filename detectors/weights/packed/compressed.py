"""compressed-tensors ``pack-quantized`` (llm-compressor's W4A16 and kin): ``weight_packed`` & co.

* ``weight_packed`` int32 ``[out, ceil(in * bits / 32)]``: each row's integers, offset by
  ``2 ** (bits - 1)`` to be unsigned, packed densely along the input dimension, lowest bits first
  (a value may straddle two words when ``bits`` does not divide 32);
* ``weight_scale`` float ``[out, groups]`` (``[out, 1]`` per channel, one element per tensor);
* ``weight_zero_point`` (asymmetric only) int32, packed the same way along the *output* dimension:
  ``[ceil(out * bits / 32), groups]``; ``weight_g_idx`` (act-order, optional): each input's group;
* ``weight_shape``: the original ``[out, in]``, checked on decoding.

``W[o, i] = (q[o, i] - zero[o, g]) * scale[o, g]``. The bits come from ``quantization_config``
(its integer weight schemes must agree): the packed width alone cannot tell 4-bit from 8-bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.packed.base import PackedFormat, PackedMeta, check_shape, register, unpack_low_first
from provbot.detectors.weights.safetensors_format import FLOAT_DTYPES, TensorMeta

_ROWS = 2048


def _scheme(q: Mapping[str, object]) -> tuple[int, int | None] | None:
    """(bits, group size or None) of the config's integer weight schemes; None unless they agree."""
    if q.get("quant_method") != "compressed-tensors":
        return None
    groups = q.get("config_groups")
    found = set()
    for g in groups.values() if isinstance(groups, dict) else ():
        w = g.get("weights") if isinstance(g, dict) else None
        if isinstance(w, dict) and w.get("type", "int") == "int" and isinstance(w.get("num_bits"), int):
            size = w.get("group_size")
            found.add((w["num_bits"], size if isinstance(size, int) and size > 0 else None))
    return found.pop() if len(found) == 1 else None


def find(tensors: Mapping[str, TensorMeta], q: Mapping[str, object], values: Mapping[str, bytes]) -> list[PackedMeta]:
    """pack-quantized weights in ``tensors`` (none without a config that names their bits)."""
    scheme = _scheme(q)
    if scheme is None or not 1 <= scheme[0] <= 8:
        return []
    bits, size = scheme
    out = []
    for name, packed in tensors.items():
        if not name.endswith(".weight_packed") or not isinstance(packed, TensorMeta):
            continue
        stem = name.removesuffix("_packed")
        scale = tensors.get(stem + "_scale")
        if not isinstance(scale, TensorMeta) or packed.dtype != "I32" or scale.dtype not in FLOAT_DTYPES:
            continue
        if len(packed.shape) != 2 or not 1 <= len(scale.shape) <= 2:
            continue
        n_out, words = packed.shape
        n_in = words * 32 // bits  # exact for real widths (multiples of 32); weight_shape checks it
        sgroups = math.prod(scale.shape[1:]) if len(scale.shape) == 2 else 1
        if n_out == 0 or n_in == 0 or (math.prod(scale.shape) != 1 and scale.shape[0] != n_out):
            continue
        group = n_in if sgroups == 1 else (size or math.ceil(n_in / sgroups))
        if math.ceil(n_in / group) != sgroups:
            continue
        parts = {"weight_packed": packed, "weight_scale": scale}
        for role in ("weight_zero_point", "weight_shape", "weight_g_idx"):
            m = tensors.get(stem.removesuffix("weight") + role)
            if isinstance(m, TensorMeta):
                parts[role] = m
        out.append(PackedMeta(stem, "compressed", (n_out, n_in), bits, group, parts, "weight_packed"))
    return out


def unpack_dense(words: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """``count`` unsigned ``bits``-wide fields per row of int32 ``words``, read as one bit stream.

    >>> unpack_dense(torch.tensor([[0x76543210]], dtype=torch.int32), 4, 8)
    tensor([[0, 1, 2, 3, 4, 5, 6, 7]])
    """
    w = words.to(torch.int64) & 0xFFFFFFFF
    w = torch.cat([w, torch.zeros(w.shape[0], 1, dtype=torch.int64)], dim=1)  # the straddle of the last word
    pos = torch.arange(count, dtype=torch.int64) * bits
    idx, off = pos // 32, pos % 32
    return ((w[:, idx] >> off) | (w[:, idx + 1] << (32 - off))) & ((1 << bits) - 1)


def decode(meta: PackedMeta, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``[out, in]`` float32 weight (see the module docstring for the layout)."""
    n_out, n_in = meta.shape
    bits, offset = meta.bits, 1 << (meta.bits - 1)
    if "weight_shape" in parts:
        stated = [int(v) for v in parts["weight_shape"].flatten().tolist()]
        if stated != [n_out, n_in]:
            raise WeightFormatError(
                f"{meta.parts['weight_shape'].name}: says {stated}, the packed data "
                f"holds {[n_out, n_in]} at {bits} bits"
            )
    scale = parts["weight_scale"].to(torch.float32).reshape(n_out if parts["weight_scale"].numel() > 1 else 1, -1)
    groups = scale.shape[1]
    if "weight_zero_point" in parts:
        zp = parts["weight_zero_point"]
        check_shape(meta.parts["weight_zero_point"], (math.ceil(n_out * bits / 32), groups), "zero point")
        zero = (unpack_dense(zp.T.contiguous(), bits, n_out).T - offset).to(torch.float32)  # packed along outputs
    else:
        zero = torch.zeros(1, 1)
    if "weight_g_idx" in parts:
        g = parts["weight_g_idx"].to(torch.int64).flatten()
        if g.numel() != n_in or (g.numel() and (int(g.min()) < 0 or int(g.max()) >= groups)):
            raise WeightFormatError(f"{meta.parts['weight_g_idx'].name}: not one group in 0..{groups - 1} per input")
    else:
        g = torch.arange(n_in) // meta.group_size
    # Inputs in group order (no act-order): whole groups broadcast against their scale and zero
    # columns instead of gathering one per element.
    size = meta.group_size
    in_order = groups > 1 and n_in % size == 0 and n_in // size == groups and torch.equal(g, torch.arange(n_in) // size)
    w = torch.empty(n_out, n_in, dtype=torch.float32)
    for r0 in range(0, n_out, _ROWS):
        r1 = min(n_out, r0 + _ROWS)
        words = parts["weight_packed"][r0:r1]
        if 32 % bits == 0:  # no field straddles a word: the plain unpack, without int64 gathers
            q = (unpack_low_first(words, bits, dim=1)[:, :n_in] - offset).to(torch.float32)
        else:
            q = (unpack_dense(words, bits, n_in) - offset).to(torch.float32)
        s = scale[r0:r1] if scale.shape[0] > 1 else scale
        z = zero[r0:r1] if zero.shape[0] > 1 else zero
        if in_order:
            qg = q.view(r1 - r0, groups, size)
            w[r0:r1] = (qg - z[:, :, None]).mul_(s[:, :, None]).view(r1 - r0, n_in)
        else:
            w[r0:r1] = (q - z[:, g] if z.shape[1] > 1 else q - z) * (s[:, g] if groups > 1 else s)
    return w


register(PackedFormat("compressed", find, decode))
