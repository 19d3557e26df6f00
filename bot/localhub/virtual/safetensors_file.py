"""A virtual bf16 safetensors file: a generated header, then tensor bytes computed per range."""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence

import numpy as np

from .values import Recipes, values


class VirtualSafetensors:
    """Byte view of one shard of ``repo`` holding ``tensors`` (name, shape) in order."""

    def __init__(self, repo: str, recipes: Recipes, tensors: Sequence[tuple[str, Sequence[int]]]) -> None:
        self.repo, self.recipes = repo, recipes
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        # (name, first byte in the data section, element count), in file order.
        self._spans: list[tuple[str, int, int]] = []
        offset = 0
        # safetensors writes tensors sorted by name (one dtype here), whatever order they come in.
        for name, shape in sorted(tensors, key=lambda t: t[0]):
            count = math.prod(shape)
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + 2 * count]}
            self._spans.append((name, offset, count))
            offset += 2 * count
        self.header = header  # as a reader parses it from the bytes below
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
        self._head = len(text).to_bytes(8, "little") + text
        self.size = len(self._head) + offset
        self._starts = [first for _, first, _ in self._spans]

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)``: only the tensor elements overlapping the range are computed."""
        stop = min(stop, self.size)
        out = bytearray(self._head[start:stop])
        base = len(self._head)
        # The first tensor that ends after ``start`` (spans are in file order), then on until ``stop``.
        i = max(0, bisect.bisect_right(self._starts, start - base) - 1)
        for name, first, count in self._spans[i:]:
            if first >= stop - base:
                break
            lo, hi = max(start - base, first), min(stop - base, first + 2 * count)
            if lo >= hi:
                continue
            # Whole elements covering [lo, hi), then trim an odd byte at either end.
            e0, e1 = (lo - first) // 2, (hi - first + 1) // 2
            # Values are bf16 already: their top halves are the stored bits.
            raw = (
                (values(self.repo, self.recipes, name, e0, e1).view(np.uint32) >> np.uint32(16)).astype("<u2").tobytes()
            )
            skip = lo - first - 2 * e0
            out += raw[skip : skip + hi - lo]
        return bytes(out)
