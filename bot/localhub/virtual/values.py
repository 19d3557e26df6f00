"""Deterministic tensor values for any element range, computed per fixed-size block.

Each block of ``BLOCK`` elements is seeded from (seed, tensor, block index), so a range costs only
the blocks it touches and equals the same slice of a whole-tensor read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
from pydantic import TypeAdapter

from .spec import BaseRecipe, BlendRecipe, DeltaRecipe, Recipe

BLOCK = 4096
Recipes = dict[str, BaseRecipe | DeltaRecipe | BlendRecipe]
_RECIPE: TypeAdapter[BaseRecipe | DeltaRecipe | BlendRecipe] = TypeAdapter(Recipe)


def _noise(seed: int, tensor: str, start: int, stop: int) -> np.ndarray:
    """Standard normal float32 values for elements ``[start, stop)`` of ``tensor``."""
    first, last = start // BLOCK, (stop - 1) // BLOCK
    chunks = []
    for block in range(first, last + 1):
        key = hashlib.blake2b(f"{seed}\0{tensor}\0{block}".encode(), digest_size=8).digest()
        rng = np.random.Generator(np.random.PCG64(int.from_bytes(key, "little")))
        chunks.append(rng.standard_normal(BLOCK, dtype=np.float32))
    joined = np.concatenate(chunks)
    offset = first * BLOCK
    return joined[start - offset : stop - offset]


def to_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits (nearest, ties to even), as torch does."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def values(
    repo: str,
    recipes: Mapping[str, BaseRecipe | DeltaRecipe | BlendRecipe],
    tensor: str,
    start: int,
    stop: int,
) -> np.ndarray:
    """Float32 values of ``tensor[start:stop]`` in ``repo``, each input rounded to bf16 first
    so a blend equals blending the stored checkpoints."""
    recipe = recipes[repo]
    if isinstance(recipe, BaseRecipe):
        raw = _noise(recipe.seed, tensor, start, stop) * np.float32(recipe.std)
    elif isinstance(recipe, DeltaRecipe):
        base = values(recipe.base, recipes, tensor, start, stop)
        raw = base + _noise(recipe.seed, tensor, start, stop) * np.float32(recipe.scale)
    else:
        raw = sum(
            (np.float32(w) * values(name, recipes, tensor, start, stop) for name, w in recipe.parts.items()),
            start=np.zeros(stop - start, dtype=np.float32),
        )
    return from_bf16(to_bf16(raw))


def parse_recipes(raw: Mapping[str, object]) -> Recipes:
    return {name: _RECIPE.validate_python(item) for name, item in raw.items()}
