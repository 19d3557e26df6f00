"""bitsandbytes 4-bit (``Linear4bit`` saved by transformers): NF4 or FP4 codes with block absmax.

* ``<m>.weight`` uint8 ``[n / 2, 1]``: the flattened ``[out, in]`` weight, two 4-bit codes per byte,
  the first element in the high nibble;
* ``<m>.weight.quant_map`` float32 ``[16]``: the code book (NF4 or FP4 values);
* ``<m>.weight.absmax``: one scale per ``blocksize`` elements, float32, or with double
  quantisation uint8 codes into ``nested_quant_map`` times ``nested_absmax`` (one per
  ``nested_blocksize`` scales) plus ``nested_offset``;
* ``<m>.weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``): a JSON object as uint8 bytes with
  ``shape``, ``blocksize`` and the nested settings. Its values are read when the model is opened
  (a few hundred bytes per weight), since the weight's shape is only there.

``W.flat[k] = quant_map[code[k]] * absmax[k // blocksize]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import torch

from provbot.detectors.errors import WeightFormatError
from provbot.detectors.weights.packed.base import OptionValue, PackedFormat, PackedMeta, register
from provbot.detectors.weights.safetensors_format import TensorMeta

_STATE = ".weight.quant_state.bitsandbytes__"
#: A quant_state larger than this is no bitsandbytes state (it holds a short JSON object).
MAX_STATE_BYTES = 4096
# Elements decoded at a time: bounds the int64 index arrays of a big matrix.
_CHUNK = 2**22


def state_tensors(tensors: Mapping[str, TensorMeta]) -> list[str]:
    """The quant_state tensors whose JSON :func:`find` needs."""
    return [
        n
        for n, m in tensors.items()
        if _STATE in n and isinstance(m, TensorMeta) and m.dtype == "U8" and 0 < m.nbytes <= MAX_STATE_BYTES
    ]


def _state(name: str, raw: bytes) -> dict[str, Any]:
    try:
        state = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WeightFormatError(f"{name}: not a bitsandbytes quant_state (no JSON object)") from None
    fields = state if isinstance(state, dict) else {}
    shape, block = fields.get("shape"), fields.get("blocksize")
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(v, int) and v > 0 for v in shape)
        and isinstance(block, int)
        and block > 0
    ):
        raise WeightFormatError(f"{name}: quant_state without a 2-D shape and a block size: {str(state)[:120]}")
    return fields


def find(tensors: Mapping[str, TensorMeta], q: Mapping[str, object], values: Mapping[str, bytes]) -> list[PackedMeta]:
    """bitsandbytes 4-bit weights whose quant_state was read (``values``)."""
    out = []
    for key, raw in values.items():
        if _STATE not in key:
            continue
        stem = key[: key.index(_STATE)] + ".weight"
        weight, absmax, qmap = (tensors.get(stem + s) for s in ("", ".absmax", ".quant_map"))
        if not (isinstance(weight, TensorMeta) and isinstance(absmax, TensorMeta) and isinstance(qmap, TensorMeta)):
            continue
        if weight.dtype != "U8":
            continue
        state = _state(tensors[key].name, raw)
        n_out, n_in = state["shape"]
        n, block = n_out * n_in, state["blocksize"]
        if weight.numel * 2 != n or qmap.numel != 16 or qmap.dtype != "F32" or absmax.numel != math.ceil(n / block):
            raise WeightFormatError(
                f"{weight.name}: {weight.numel} bytes, {absmax.numel} block scales and "
                f"{qmap.numel} code values do not hold a {n_out}x{n_in} weight in blocks of {block}"
            )
        parts: dict[str, TensorMeta] = {
            "weight": weight,
            "absmax": absmax,
            "quant_map": qmap,
            "quant_state": tensors[key],
        }
        options: dict[str, OptionValue] = {"blocksize": block}
        if absmax.dtype == "U8":  # double quantisation: the scales are codes themselves
            nested, nmap = tensors.get(stem + ".nested_absmax"), tensors.get(stem + ".nested_quant_map")
            nblock, offset = state.get("nested_blocksize"), state.get("nested_offset")
            if not (
                isinstance(nested, TensorMeta)
                and isinstance(nmap, TensorMeta)
                and isinstance(nblock, int)
                and nblock > 0
                and isinstance(offset, int | float)
                and nmap.numel == 256
                and nested.numel == math.ceil(absmax.numel / nblock)
            ):
                raise WeightFormatError(f"{weight.name}: double-quantised scales without a usable nested state")
            parts.update(nested_absmax=nested, nested_quant_map=nmap)
            options.update(nested_blocksize=nblock, nested_offset=float(offset))
        elif absmax.dtype != "F32":
            raise WeightFormatError(f"{absmax.name}: {absmax.dtype} block scales (float32 or uint8 codes expected)")
        out.append(
            PackedMeta(
                stem,
                "bnb",
                (n_out, n_in),
                4,
                block,
                parts,
                "weight",
                {**options, "quant_type": str(state.get("quant_type", "?"))},
            )
        )
    return out


def decode(meta: PackedMeta, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``[out, in]`` float32 weight (see the module docstring for the layout)."""
    block = int(meta.options["blocksize"])
    absmax = parts["absmax"].reshape(-1)
    if "nested_absmax" in parts:
        nblock = int(meta.options["nested_blocksize"])
        at = torch.arange(absmax.numel()) // nblock
        absmax = parts["nested_quant_map"][absmax.long()] * parts["nested_absmax"].reshape(-1)[at] + float(
            meta.options["nested_offset"]
        )
    qmap = parts["quant_map"].reshape(-1)
    packed = parts["weight"].reshape(-1)
    flat = torch.empty(packed.numel() * 2, dtype=torch.float32)
    for b0 in range(0, packed.numel(), _CHUNK):
        b = packed[b0 : b0 + _CHUNK]
        codes = torch.stack(((b >> 4) & 15, b & 15), dim=1).reshape(-1).long()
        k = torch.arange(2 * b0, 2 * b0 + codes.numel()) // block
        flat[2 * b0 : 2 * b0 + codes.numel()] = qmap[codes] * absmax[k]
    return flat.reshape(meta.shape)


register(PackedFormat("bnb", find, decode, state_tensors))
