"""Packed integer weights (GPTQ, AWQ, compressed-tensors pack-quantized, bitsandbytes 4-bit), decoded to float32.

A packed format stores a ``[out, in]`` weight as several integer and float tensors next to each
other (``<module>.qweight``, ``.scales``, ``.qzeros``, ...). One module per format finds those
groups in a model's tensor table and decodes a group back into the float matrix; formats plug in
with :func:`register` (one file each, like mergekit's merge methods).

:func:`with_packed` replaces each decodable group by one :class:`PackedMeta` under the weight's
own name (``<module>.weight``), so planning and reading treat it like any other weight of that
shape. The layouts are transposed against the float weight (GPTQ, AWQ) or need their group whole,
so a packed weight is read and decoded whole: the full mode does it; sampled scans leave packed
weights out (see :func:`provbot.detectors.weights.sampling.packed_weights`).

>>> from provbot.detectors.weights.safetensors_format import TensorMeta
>>> t = {"l.qweight": TensorMeta("l.qweight", "I32", (4, 16), "f", 0, 256),
...      "l.qzeros": TensorMeta("l.qzeros", "I32", (1, 2), "f", 256, 264),
...      "l.scales": TensorMeta("l.scales", "F16", (1, 16), "f", 264, 296)}
>>> out = with_packed(t, {})
>>> sorted(out), out["l.weight"].format, out["l.weight"].shape, out["l.weight"].bits
(['l.weight'], 'gptq', (16, 32), 4)
"""

from __future__ import annotations

# Importing a format module registers it (one module per format, as mergekit keeps its methods).
from provbot.detectors.weights.packed import awq, bnb, compressed, gptq  # noqa: E402,F401
from provbot.detectors.weights.packed.base import (
    FORMATS,
    PackedFormat,
    PackedMeta,
    check_shape,
    config_int,
    decode,
    dequantize_rows,
    group_size,
    quantization_config,
    register,
    unpack_low_first,
    with_packed,
)

__all__ = [
    "FORMATS",
    "PackedFormat",
    "PackedMeta",
    "check_shape",
    "config_int",
    "decode",
    "dequantize_rows",
    "group_size",
    "quantization_config",
    "register",
    "unpack_low_first",
    "with_packed",
]
