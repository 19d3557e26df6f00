"""Small safetensors checkpoints written directly (no model classes): layouts, dtypes, quantization.

Every builder takes a float32 ``state`` ({canonical name: tensor}) and writes one on-disk variant,
so tests can check that each variant reads back the same values at the same positions.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

HIDDEN, INTER, VOCAB, LAYERS = 32, 48, 64, 3


def dense_state(seed: int = 0, layers: int = LAYERS, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    """A Llama-shaped float32 state dict with canonical (unprefixed) names."""
    g = torch.Generator().manual_seed(seed)
    s = {
        "embed_tokens.weight": torch.randn(vocab, HIDDEN, generator=g),
        "norm.weight": 1 + 0.1 * torch.randn(HIDDEN, generator=g),
    }
    for i in range(layers):
        p = f"layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            s[p + f"self_attn.{n}.weight"] = torch.randn(HIDDEN, HIDDEN, generator=g) * 0.1
        s[p + "mlp.gate_proj.weight"] = torch.randn(INTER, HIDDEN, generator=g) * 0.1
        s[p + "mlp.up_proj.weight"] = torch.randn(INTER, HIDDEN, generator=g) * 0.1
        s[p + "mlp.down_proj.weight"] = torch.randn(HIDDEN, INTER, generator=g) * 0.1
        s[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(HIDDEN, generator=g)
        s[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(HIDDEN, generator=g)
    s["lm_head.weight"] = torch.randn(vocab, HIDDEN, generator=g)
    return s


def moe_state(seed: int = 0, layers: int = 4, experts: int = 16) -> dict[str, torch.Tensor]:
    """A Qwen-MoE-shaped state: attention, router, shared expert, routed experts, norms."""
    g = torch.Generator().manual_seed(seed)
    s = {"embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=g), "norm.weight": torch.ones(HIDDEN)}
    for i in range(layers):
        p = f"layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            s[p + f"self_attn.{n}.weight"] = torch.randn(HIDDEN, HIDDEN, generator=g)
        s[p + "mlp.gate.weight"] = torch.randn(experts, HIDDEN, generator=g)
        for n, shape in (("gate_proj", (16, HIDDEN)), ("up_proj", (16, HIDDEN)), ("down_proj", (HIDDEN, 16))):
            s[p + f"mlp.shared_expert.{n}.weight"] = torch.randn(*shape, generator=g)
            for e in range(experts):
                s[p + f"mlp.experts.{e}.{n}.weight"] = torch.randn(*shape, generator=g)
        s[p + "input_layernorm.weight"] = torch.ones(HIDDEN)
        s[p + "post_attention_layernorm.weight"] = torch.ones(HIDDEN)
    s["lm_head.weight"] = torch.randn(VOCAB, HIDDEN, generator=g)
    return s


def write_model(
    folder: Path,
    state: dict[str, torch.Tensor],
    *,
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    shards: int = 1,
    config: dict | None = None,
) -> Path:
    """Write ``state`` as ``folder/model.safetensors`` or as ``shards`` files plus an index json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "llama"}))
    named = {(prefix + k if k != "lm_head.weight" else k): v.to(dtype).contiguous() for k, v in state.items()}
    if shards == 1:
        save_file(named, str(folder / "model.safetensors"))
        return folder
    names = sorted(named)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: named[k] for k in part}, str(folder / fname))
        weight_map.update({k: fname for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def fp8_quantize(
    w: torch.Tensor, per_row: bool, fmt: torch.dtype = torch.float8_e4m3fn
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 weight, float32 scale) with w ~= fp8 * scale; scale per row (rows, 1) or per tensor (1,)."""
    top = 448.0 if fmt == torch.float8_e4m3fn else 57344.0
    amax = w.abs().amax(dim=1, keepdim=True) if per_row else w.abs().amax().reshape(1)
    scale = (amax / top).clamp(min=1e-12)
    return (w / scale).to(fmt), scale.float()


def int8_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, per-row float32 scale (rows, 1))."""
    scale = (w.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale.float()


def write_quantized(
    folder: Path, state: dict[str, torch.Tensor], kind: str, suffix: str = "_scale"
) -> dict[str, torch.Tensor]:
    """Write a quantized copy (2-D weights only; 1-D stay bf16). Returns the dequantised reference."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    out, ref = {}, {}
    for k, v in state.items():
        if v.dim() == 2 and k != "embed_tokens.weight":
            if kind == "int8":
                q, sc = int8_quantize(v)
            else:
                q, sc = fp8_quantize(
                    v, per_row=(kind == "fp8_row"), fmt=torch.float8_e5m2 if kind == "fp8_e5m2" else torch.float8_e4m3fn
                )
            out["model." + k], out["model." + k + suffix] = q, sc
            ref[k] = q.float() * sc
        else:
            out["model." + k if k != "lm_head.weight" else k] = v.to(torch.bfloat16)
            ref[k] = v.to(torch.bfloat16).float()
    save_file(out, str(folder / "model.safetensors"))
    return ref


def raw_safetensors(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    """Write a safetensors file from a raw header object (or bytes), for malformed-file tests."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path
