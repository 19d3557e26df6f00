"""Tensor names and shapes of real checkpoint layouts, generated from config-like numbers."""

from __future__ import annotations

from collections.abc import Iterator

Tensor = tuple[str, tuple[int, ...]]


def qwen3_moe(
    *,
    layers: int = 94,
    experts: int = 128,
    hidden: int = 4096,
    moe_intermediate: int = 1536,
    heads: int = 64,
    kv_heads: int = 4,
    head_dim: int = 128,
    vocab: int = 151936,
) -> Iterator[Tensor]:
    """Qwen3-MoE (235B at the defaults): per layer attention with q/k norms, a router, experts."""
    yield "model.embed_tokens.weight", (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", (hidden,)
        yield f"{p}.self_attn.q_proj.weight", (heads * head_dim, hidden)
        yield f"{p}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden)
        yield f"{p}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden)
        yield f"{p}.self_attn.o_proj.weight", (hidden, heads * head_dim)
        yield f"{p}.self_attn.q_norm.weight", (head_dim,)
        yield f"{p}.self_attn.k_norm.weight", (head_dim,)
        yield f"{p}.post_attention_layernorm.weight", (hidden,)
        yield f"{p}.mlp.gate.weight", (experts, hidden)
        for e in range(experts):
            yield f"{p}.mlp.experts.{e}.gate_proj.weight", (moe_intermediate, hidden)
            yield f"{p}.mlp.experts.{e}.up_proj.weight", (moe_intermediate, hidden)
            yield f"{p}.mlp.experts.{e}.down_proj.weight", (hidden, moe_intermediate)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def shard(tensors: list[Tensor], shards: int) -> list[list[Tensor]]:
    """Split in order into ``shards`` files of roughly equal bytes, as save_pretrained does."""
    sizes = [2 * _count(shape) for _, shape in tensors]
    target = sum(sizes) / shards
    out: list[list[Tensor]] = [[]]
    filled = 0
    for tensor, size in zip(tensors, sizes, strict=True):
        if out[-1] and filled + size > target * len(out) and len(out) < shards:
            out.append([])
        out[-1].append(tensor)
        filled += size
    return out


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
