"""Q4_K blocks, as llama.cpp lays them out: the ``gguf`` package decodes K-quants but does not write them.

A block holds 256 values in 144 bytes: two fp16 super-scales (``d``, ``dmin``), twelve bytes packing
eight 6-bit sub-block scales and eight 6-bit minimums, then 128 bytes of 4-bit codes. Value
``i`` of sub-block ``j`` decodes as ``d * sc[j] * q - dmin * mn[j]``.

>>> import numpy as np, gguf
>>> x = np.linspace(-1, 1, 512, dtype=np.float32)
>>> blocks = q4_k_blocks(x)
>>> blocks.shape
(2, 144)
>>> back = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_K).ravel()
>>> bool(np.abs(back - x).max() < 0.5 / 15 + 1e-3)  # half a step of the widest sub-block
True
"""

from __future__ import annotations

import numpy as np

BLOCK_VALUES = 256
BLOCK_BYTES = 144


def q4_k_blocks(x: np.ndarray) -> np.ndarray:
    """Q4_K blocks (uint8, shape ``(n, 144)``) of a float array whose size is a multiple of 256.

    Each sub-block of 32 values gets a 6-bit scale and a 6-bit minimum under the two fp16
    super-scales; a plain min/max fit (llama.cpp searches harder, with the same layout).
    Blocks are independent, so encoding a slice of whole blocks equals that slice of the whole.
    """
    v = x.astype(np.float32).reshape(-1, 8, 32)
    lo = np.minimum(v.min(axis=2), 0.0)  # (n, 8)
    hi = v.max(axis=2)
    step = np.maximum(hi - lo, 1e-12) / 15.0
    d = np.maximum(step.max(axis=1), 1e-12) / 63.0  # (n,)
    dmin = np.maximum((-lo).max(axis=1), 1e-12) / 63.0
    d16, dmin16 = d.astype(np.float16), dmin.astype(np.float16)
    # A super-scale that fp16 rounds to zero (a block of zeros, or no negative value) divides by one.
    sc = np.clip(np.round(step / _nonzero(d16)[:, None]), 1, 63).astype(np.uint8)
    mn = np.clip(np.round(-lo / _nonzero(dmin16)[:, None]), 0, 63).astype(np.uint8)
    scale = d16.astype(np.float32)[:, None] * sc
    offset = dmin16.astype(np.float32)[:, None] * mn
    q = np.clip(np.round((v + offset[:, :, None]) / _nonzero(scale)[:, :, None]), 0, 15).astype(np.uint8)
    packed = np.empty((v.shape[0], 12), dtype=np.uint8)
    packed[:, 0:4] = (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = (mn[:, :4] & 0x3F) | ((mn[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(v.shape[0], 128)
    head = np.stack([d16, dmin16], axis=1).view(np.uint8)  # (n, 4)
    return np.concatenate([head, packed, qs], axis=1)


def _nonzero(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return np.where(x > 0, x, np.float32(1))
