"""Generated layouts match real checkpoint sizes and shard like save_pretrained."""

import math

from provbot.bot.localhub.virtual.layouts import qwen3_moe, shard


def test_qwen3_moe_235b_parameter_count() -> None:
    total = sum(math.prod(shape) for _, shape in qwen3_moe())
    assert 234e9 < total < 236e9


def test_400b_class_in_94_shards_keeps_order_and_balance() -> None:
    tensors = list(qwen3_moe(moe_intermediate=2560))
    shards = shard(tensors, 94)
    assert len(shards) == 94
    assert [t for s in shards for t in s] == tensors
    sizes = [sum(2 * math.prod(shape) for _, shape in s) for s in shards]
    assert 760e9 < sum(sizes) < 800e9
    assert max(sizes) < 2.2 * sum(sizes) / 94
