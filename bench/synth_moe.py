"""Generate a synthetic large-MoE checkpoint family for the scan benchmark.

The tensor names, count and layout follow Qwen3-30B-A3B (48 layers x 128 experts, q/k norms,
router, untied head: 18,867 tensors), scaled down in width, not in tensor count. Three models are
written as sharded safetensors repos under ``ROOT/bench/``:

* ``bench/base``   random weights (the "Qwen" role),
* ``bench/tuned``  base plus a fine-tune-like delta (the "Nex" role),
* ``bench/merged`` ``0.6 * tuned + 0.4 * base``, stored in bf16 (the "Rio" role).

Tensors are generated one at a time from per-tensor seeds and streamed to disk, so memory stays at
one tensor. Run ``python bench/synth_moe.py ROOT --hidden 512`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import torch

from provbot.bot.localhub.virtual.layouts import qwen3_moe

LAYERS, EXPERTS, Q_HEADS, KV_HEADS = 48, 128, 32, 4


def tensor_shapes(
    hidden: int, moe_intermediate: int, head_dim: int, vocab: int
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Yield (name, shape) in checkpoint order, Qwen3-MoE naming."""
    yield from qwen3_moe(
        layers=LAYERS,
        experts=EXPERTS,
        hidden=hidden,
        moe_intermediate=moe_intermediate,
        heads=Q_HEADS,
        kv_heads=KV_HEADS,
        head_dim=head_dim,
        vocab=vocab,
    )


def _seed(name: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{name}".encode()).digest()[:8], "little") & (2**63 - 1)


def _base(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 1:
        return torch.ones(shape) + 0.01 * torch.randn(shape, generator=torch.Generator().manual_seed(_seed(name, "b")))
    g = torch.Generator().manual_seed(_seed(name, "base"))
    return torch.randn(shape, generator=g) * (shape[-1] ** -0.5)


def _delta(name: str, shape: tuple[int, ...], scale: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(_seed(name, "tune"))
    return torch.randn(shape, generator=g) * scale * 0.05


def model_tensors(name: str, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The bf16 tensor ``name`` of each model (base, tuned, merged), generated together."""
    base = _base(name, shape).to(torch.bfloat16)
    tuned = (base.float() + _delta(name, shape, base.float().abs().mean())).to(torch.bfloat16)
    merged = (0.6 * tuned.float() + 0.4 * base.float()).to(torch.bfloat16)
    return {"base": base, "tuned": tuned, "merged": merged}


ROLES = ("base", "tuned", "merged")


def write_repos(root: Path, shapes: list[tuple[str, tuple[int, ...]]], shard_bytes: int, config: dict) -> int:
    """Stream the three models as shards + index (same layout); returns tensor bytes per model."""
    outs = {role: root / "bench" / role for role in ROLES}
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = 2 * math.prod(shape)
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map: dict[str, str] = {}
    total = 0
    for out in outs.values():
        out.mkdir(parents=True, exist_ok=True)
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape in shard:
            n = 2 * math.prod(shape)
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        handles = {role: open(outs[role] / fname, "wb") for role in ROLES}
        try:
            for fh in handles.values():
                fh.write(struct.pack("<Q", len(raw)))
                fh.write(raw)
            for name, shape in shard:
                for role, t in model_tensors(name, shape).items():
                    handles[role].write(t.contiguous().view(torch.uint8).numpy().tobytes())
        finally:
            for fh in handles.values():
                fh.close()
        total += offset
    for role, out in outs.items():
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )
        (out / "config.json").write_text(json.dumps(config, indent=1))
        claim = "tags: [original]\n---\nTrained from scratch.\n" if role == "merged" else "---\n"
        (out / "README.md").write_text("---\nlicense: apache-2.0\n" + claim)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="local Hub root; repos land in ROOT/bench/{base,tuned,merged}")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--moe-intermediate", type=int, default=192)
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--shard-gb", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shapes = list(tensor_shapes(args.hidden, args.moe_intermediate, args.head_dim, args.vocab))
    config = {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": args.hidden,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": Q_HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": args.head_dim,
        "moe_intermediate_size": args.moe_intermediate,
        "num_experts": EXPERTS,
        "num_experts_per_tok": 8,
        "vocab_size": args.vocab,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    total = write_repos(args.root, shapes, int(args.shard_gb * 2**30), config)
    print(f"bench/{{{','.join(ROLES)}}}: {len(shapes)} tensors, {total / 2**30:.2f} GiB each")


if __name__ == "__main__":
    main()
