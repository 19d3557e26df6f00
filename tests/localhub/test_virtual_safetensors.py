"""A virtual safetensors shard parses with the real library and serves any byte range."""

import numpy as np
import torch
from safetensors.torch import load

from provbot.bot.localhub.virtual.safetensors_file import VirtualSafetensors
from provbot.bot.localhub.virtual.values import from_bf16, parse_recipes, values

RECIPES = parse_recipes({"base": {"kind": "base", "seed": 3}})
FILE = VirtualSafetensors("base", RECIPES, [("a.weight", (5, 7)), ("b.weight", (4099,))])


def test_parses_with_safetensors_and_holds_the_values() -> None:
    tensors = load(FILE.read(0, FILE.size))
    assert tensors["a.weight"].shape == (5, 7) and tensors["a.weight"].dtype == torch.bfloat16
    got = tensors["b.weight"].view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(from_bf16(got), values("base", RECIPES, "b.weight", 0, 4099))


def test_any_range_equals_the_whole_read() -> None:
    whole = FILE.read(0, FILE.size)
    for start, stop in [(0, 9), (3, 200), (101, 171), (FILE.size - 5, FILE.size), (0, FILE.size + 10)]:
        assert FILE.read(start, stop) == whole[start:stop]
