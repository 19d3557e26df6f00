"""Virtual repo values: ranges match whole reads, blends match the blend of their inputs."""

import numpy as np
import pytest
from pydantic import ValidationError

from provbot.bot.localhub.virtual.values import BLOCK, parse_recipes, values

RECIPES = parse_recipes(
    {
        "base": {"kind": "base", "seed": 1},
        "tuned": {"kind": "delta", "base": "base", "seed": 2},
        "merged": {"kind": "blend", "parts": {"tuned": 0.6, "base": 0.4}},
    }
)


@pytest.mark.parametrize("repo", ["base", "tuned", "merged"])
def test_any_range_equals_the_whole_read(repo: str) -> None:
    whole = values(repo, RECIPES, "w", 0, 3 * BLOCK)
    for start, stop in [(0, 1), (BLOCK - 3, BLOCK + 5), (17, 3 * BLOCK), (2 * BLOCK, 2 * BLOCK + 1)]:
        np.testing.assert_array_equal(values(repo, RECIPES, "w", start, stop), whole[start:stop])


def test_blend_equals_blend_of_inputs_in_bf16() -> None:
    tuned = values("tuned", RECIPES, "w", 0, BLOCK)
    base = values("base", RECIPES, "w", 0, BLOCK)
    merged = values("merged", RECIPES, "w", 0, BLOCK)
    assert not np.array_equal(tuned, base)
    np.testing.assert_allclose(merged, 0.6 * tuned + 0.4 * base, rtol=2**-8, atol=1e-6)


def test_tensors_and_seeds_differ() -> None:
    assert not np.array_equal(values("base", RECIPES, "a", 0, 64), values("base", RECIPES, "b", 0, 64))


def test_bad_recipe_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_recipes({"x": {"kind": "blend", "parts": {"a": 1.0}}})
