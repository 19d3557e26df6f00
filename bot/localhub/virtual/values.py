"""Deterministic tensor values for any element range, computed without touching other elements.

Noise comes from a PCG64 stream per (seed, tensor) that is advanced to the first element, so a range
costs only its own elements and equals the same slice of a whole-tensor read. Each value is the sum
of two 32-bit uniforms (a triangular distribution), scaled to unit variance: cheap, and the
statistics a scan computes do not need normal tails.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping

import numpy as np
from pydantic import TypeAdapter

from .spec import BaseRecipe, BlendRecipe, DeltaRecipe, GgufRecipe, Recipe

BLOCK = 4096  # a convenient range length for tests; values have no block structure
AnyRecipe = BaseRecipe | DeltaRecipe | BlendRecipe | GgufRecipe
Recipes = dict[str, AnyRecipe]
_RECIPE: TypeAdapter[AnyRecipe] = TypeAdapter(Recipe)
_SUM_MEAN = 2 * (2**32 - 1) / 2
_SUM_STD = float(np.sqrt(2 * (2.0**64 - 1) / 12))
_local = threading.local()  # a bit generator per thread: they are not thread-safe


def _noise(seed: int, tensor: str, start: int, stop: int) -> np.ndarray:
    """Zero-mean, unit-variance float32 values for elements ``[start, stop)`` of ``tensor``."""
    key = hashlib.blake2b(f"{seed}\0{tensor}".encode(), digest_size=32).digest()
    gen = getattr(_local, "gen", None)
    if gen is None:
        gen = _local.gen = np.random.PCG64(0)
    gen.state = {
        "bit_generator": "PCG64",
        "state": {"state": int.from_bytes(key[:16], "little"), "inc": int.from_bytes(key[16:], "little") | 1},
        "has_uint32": 0,
        "uinteger": 0,
    }
    gen.advance(start)
    lanes = gen.random_raw(stop - start).view(np.uint32).astype(np.float32).reshape(-1, 2)
    total = lanes[:, 0] + lanes[:, 1]
    total -= np.float32(_SUM_MEAN)
    total *= np.float32(1 / _SUM_STD)
    return total


def to_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits (nearest, ties to even), as torch does."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def round_bf16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32."""
    bits = values.astype(np.float32, copy=False).view(np.uint32)
    rounded = (bits >> np.uint32(16)) & np.uint32(1)
    rounded += bits
    rounded += np.uint32(0x7FFF)
    rounded &= np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def values(
    repo: str,
    recipes: Mapping[str, AnyRecipe],
    tensor: str,
    start: int,
    stop: int,
    _memo: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Float32 values of ``tensor[start:stop]`` in ``repo``, each input rounded to bf16 first
    so a blend equals blending the stored checkpoints. A GGUF repo's values are those it quantizes."""
    memo = {} if _memo is None else _memo  # a repo two parts share (their base) is computed once
    if repo in memo:
        return memo[repo]
    recipe = recipes[repo]
    if isinstance(recipe, GgufRecipe):
        return values(recipe.of, recipes, tensor, start, stop, memo)
    if isinstance(recipe, BaseRecipe):
        raw = _noise(recipe.seed, tensor, start, stop) * np.float32(recipe.std)
    elif isinstance(recipe, DeltaRecipe):
        base = values(recipe.base, recipes, tensor, start, stop, memo)
        raw = base + _noise(recipe.seed, tensor, start, stop) * np.float32(recipe.scale)
    else:
        raw = np.zeros(stop - start, dtype=np.float32)
        for name, weight in recipe.parts.items():
            raw += np.float32(weight) * values(name, recipes, tensor, start, stop, memo)
    out = round_bf16(raw)
    memo[repo] = out
    return out


def parse_recipes(raw: Mapping[str, object]) -> Recipes:
    return {name: _RECIPE.validate_python(item) for name, item in raw.items()}
