"""Tensor names and shapes of real checkpoint layouts, generated from config-like numbers.

Each layout is a tensor generator (keyword arguments with a real release's values as defaults) plus
the config.json keys those arguments fill; :data:`LAYOUTS` names them for spec files.

>>> sorted(LAYOUTS)
['deepseek_moe', 'llama', 'qwen3_5_moe', 'qwen3_moe']
>>> LAYOUTS["llama"].config(layers=2)["num_hidden_layers"]
2
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

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
            yield from _mlp(f"{p}.mlp.experts.{e}", hidden, moe_intermediate)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def llama(
    *,
    layers: int = 80,
    hidden: int = 8192,
    intermediate: int = 28672,
    heads: int = 64,
    kv_heads: int = 8,
    vocab: int = 128256,
) -> Iterator[Tensor]:
    """Dense Llama (Llama-3-70B at the defaults)."""
    head_dim = hidden // heads
    yield "model.embed_tokens.weight", (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", (hidden,)
        yield f"{p}.self_attn.q_proj.weight", (hidden, hidden)
        yield f"{p}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden)
        yield f"{p}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden)
        yield f"{p}.self_attn.o_proj.weight", (hidden, hidden)
        yield f"{p}.post_attention_layernorm.weight", (hidden,)
        yield from _mlp(f"{p}.mlp", hidden, intermediate)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def deepseek_moe(
    *,
    layers: int = 61,
    dense_layers: int = 3,
    experts: int = 256,
    shared_experts: int = 1,
    hidden: int = 7168,
    intermediate: int = 18432,
    moe_intermediate: int = 2048,
    heads: int = 128,
    q_lora_rank: int = 1536,
    kv_lora_rank: int = 512,
    qk_nope_dim: int = 128,
    qk_rope_dim: int = 64,
    v_head_dim: int = 128,
    vocab: int = 129280,
) -> Iterator[Tensor]:
    """DeepSeek-V3-style MoE (671B at the defaults): latent attention, dense first layers, routed
    experts plus shared experts."""
    qk_dim = qk_nope_dim + qk_rope_dim
    yield "model.embed_tokens.weight", (vocab, hidden)
    for i in range(layers):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", (hidden,)
        yield f"{p}.self_attn.q_a_proj.weight", (q_lora_rank, hidden)
        yield f"{p}.self_attn.q_a_layernorm.weight", (q_lora_rank,)
        yield f"{p}.self_attn.q_b_proj.weight", (heads * qk_dim, q_lora_rank)
        yield f"{p}.self_attn.kv_a_proj_with_mqa.weight", (kv_lora_rank + qk_rope_dim, hidden)
        yield f"{p}.self_attn.kv_a_layernorm.weight", (kv_lora_rank,)
        yield f"{p}.self_attn.kv_b_proj.weight", (heads * (qk_nope_dim + v_head_dim), kv_lora_rank)
        yield f"{p}.self_attn.o_proj.weight", (hidden, heads * v_head_dim)
        yield f"{p}.post_attention_layernorm.weight", (hidden,)
        if i < dense_layers:
            yield from _mlp(f"{p}.mlp", hidden, intermediate)
            continue
        yield f"{p}.mlp.gate.weight", (experts, hidden)
        yield f"{p}.mlp.gate.e_score_correction_bias", (experts,)
        for e in range(experts):
            yield from _mlp(f"{p}.mlp.experts.{e}", hidden, moe_intermediate)
        yield from _mlp(f"{p}.mlp.shared_experts", hidden, moe_intermediate * shared_experts)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def qwen3_5_moe(
    *,
    layers: int = 40,
    full_attention_every: int = 4,
    experts: int = 256,
    hidden: int = 2048,
    moe_intermediate: int = 512,
    heads: int = 16,
    kv_heads: int = 2,
    head_dim: int = 256,
    linear_heads: int = 16,
    linear_value_heads: int = 32,
    linear_head_dim: int = 128,
    conv_kernel: int = 4,
    vocab: int = 248320,
    vision_layers: int = 27,
    vision_hidden: int = 1152,
    vision_intermediate: int = 4304,
    patch: int = 16,
) -> Iterator[Tensor]:
    """Qwen3.5-style multimodal MoE: a language model (``model.language_model.*``) whose layers are
    mostly linear attention (gated delta rule) with full attention every ``full_attention_every``
    layers, routed plus shared experts, and a vision tower (``model.visual.*``)."""
    p0 = "model.language_model"
    yield f"{p0}.embed_tokens.weight", (vocab, hidden)
    key_dim, value_dim = linear_heads * linear_head_dim, linear_value_heads * linear_head_dim
    for i in range(layers):
        p = f"{p0}.layers.{i}"
        yield f"{p}.input_layernorm.weight", (hidden,)
        if (i + 1) % full_attention_every == 0:
            yield f"{p}.self_attn.q_proj.weight", (2 * heads * head_dim, hidden)  # query and its gate
            yield f"{p}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden)
            yield f"{p}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden)
            yield f"{p}.self_attn.o_proj.weight", (hidden, heads * head_dim)
            yield f"{p}.self_attn.q_norm.weight", (head_dim,)
            yield f"{p}.self_attn.k_norm.weight", (head_dim,)
        else:
            yield f"{p}.linear_attn.in_proj_qkv.weight", (2 * key_dim + value_dim, hidden)
            yield f"{p}.linear_attn.in_proj_z.weight", (value_dim, hidden)
            yield f"{p}.linear_attn.in_proj_b.weight", (linear_value_heads, hidden)
            yield f"{p}.linear_attn.in_proj_a.weight", (linear_value_heads, hidden)
            yield f"{p}.linear_attn.conv1d.weight", (2 * key_dim + value_dim, 1, conv_kernel)
            yield f"{p}.linear_attn.dt_bias", (linear_value_heads,)
            yield f"{p}.linear_attn.A_log", (linear_value_heads,)
            yield f"{p}.linear_attn.norm.weight", (linear_head_dim,)
            yield f"{p}.linear_attn.out_proj.weight", (hidden, value_dim)
        yield f"{p}.post_attention_layernorm.weight", (hidden,)
        yield f"{p}.mlp.gate.weight", (experts, hidden)
        for e in range(experts):
            yield from _mlp(f"{p}.mlp.experts.{e}", hidden, moe_intermediate)
        yield from _mlp(f"{p}.mlp.shared_expert", hidden, moe_intermediate)
        yield f"{p}.mlp.shared_expert_gate.weight", (1, hidden)
    yield f"{p0}.norm.weight", (hidden,)
    v = "model.visual"
    yield f"{v}.patch_embed.proj.weight", (vision_hidden, 3, 2, patch, patch)
    yield f"{v}.patch_embed.proj.bias", (vision_hidden,)
    for i in range(vision_layers):
        b = f"{v}.blocks.{i}"
        for norm in ("norm1", "norm2"):
            yield f"{b}.{norm}.weight", (vision_hidden,)
            yield f"{b}.{norm}.bias", (vision_hidden,)
        yield f"{b}.attn.qkv.weight", (3 * vision_hidden, vision_hidden)
        yield f"{b}.attn.qkv.bias", (3 * vision_hidden,)
        yield f"{b}.attn.proj.weight", (vision_hidden, vision_hidden)
        yield f"{b}.attn.proj.bias", (vision_hidden,)
        yield f"{b}.mlp.linear_fc1.weight", (vision_intermediate, vision_hidden)
        yield f"{b}.mlp.linear_fc1.bias", (vision_intermediate,)
        yield f"{b}.mlp.linear_fc2.weight", (vision_hidden, vision_intermediate)
        yield f"{b}.mlp.linear_fc2.bias", (vision_hidden,)
    merged = vision_hidden * 4
    yield f"{v}.merger.norm.weight", (vision_hidden,)
    yield f"{v}.merger.linear_fc1.weight", (merged, merged)
    yield f"{v}.merger.linear_fc2.weight", (hidden, merged)
    yield "lm_head.weight", (vocab, hidden)


def _mlp(prefix: str, hidden: int, intermediate: int) -> Iterator[Tensor]:
    yield f"{prefix}.gate_proj.weight", (intermediate, hidden)
    yield f"{prefix}.up_proj.weight", (intermediate, hidden)
    yield f"{prefix}.down_proj.weight", (hidden, intermediate)


class Layout(NamedTuple):
    """A layout's tensor generator and how its config.json names the generator's arguments."""

    tensors: Callable[..., Iterator[Tensor]]
    model_type: str
    architecture: str
    config_keys: dict[str, str]  # config.json key -> the generator's argument it holds

    def parameters(self) -> dict[str, int]:
        """The generator's arguments and their defaults."""
        return {k: v.default for k, v in inspect.signature(self.tensors).parameters.items()}

    def config(self, **params: int) -> dict[str, Any]:
        args = {**self.parameters(), **params}
        out: dict[str, Any] = {"architectures": [self.architecture], "model_type": self.model_type}
        out.update({key: args[arg] for key, arg in self.config_keys.items()})
        out["torch_dtype"] = "bfloat16"
        return out


_COMMON = {"num_hidden_layers": "layers", "hidden_size": "hidden", "vocab_size": "vocab"}
_ATTN = {"num_attention_heads": "heads", "num_key_value_heads": "kv_heads"}
LAYOUTS: dict[str, Layout] = {
    "qwen3_moe": Layout(
        qwen3_moe,
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        {
            **_COMMON,
            **_ATTN,
            "num_experts": "experts",
            "moe_intermediate_size": "moe_intermediate",
            "head_dim": "head_dim",
        },
    ),
    "llama": Layout(llama, "llama", "LlamaForCausalLM", {**_COMMON, **_ATTN, "intermediate_size": "intermediate"}),
    "deepseek_moe": Layout(
        deepseek_moe,
        "deepseek_v3",
        "DeepseekV3ForCausalLM",
        {
            **_COMMON,
            "first_k_dense_replace": "dense_layers",
            "n_routed_experts": "experts",
            "n_shared_experts": "shared_experts",
            "intermediate_size": "intermediate",
            "moe_intermediate_size": "moe_intermediate",
            "num_attention_heads": "heads",
            "q_lora_rank": "q_lora_rank",
            "kv_lora_rank": "kv_lora_rank",
            "qk_nope_head_dim": "qk_nope_dim",
            "qk_rope_head_dim": "qk_rope_dim",
            "v_head_dim": "v_head_dim",
        },
    ),
    "qwen3_5_moe": Layout(
        qwen3_5_moe,
        "qwen3_5_moe",
        "Qwen3_5MoeForConditionalGeneration",
        {
            **_COMMON,
            **_ATTN,
            "full_attention_interval": "full_attention_every",
            "num_experts": "experts",
            "moe_intermediate_size": "moe_intermediate",
            "head_dim": "head_dim",
        },
    ),
}


def shard(tensors: list[Tensor], shards: int) -> list[list[Tensor]]:
    """Split in order into ``shards`` files of roughly equal bytes, as save_pretrained does."""
    sizes = [2 * math.prod(shape) for _, shape in tensors]
    target = sum(sizes) / shards
    out: list[list[Tensor]] = [[]]
    filled = 0
    for tensor, size in zip(tensors, sizes, strict=True):
        if out[-1] and filled + size > target * len(out) and len(out) < shards:
            out.append([])
        out[-1].append(tensor)
        filled += size
    return out
