"""Benchmark: a sampled scan of a multi-GB GGUF merge served by the local Hub, bytes and requests per verdict.

Generates (once, under ``--root``) two dense Llama-layout parents in bf16 safetensors (random
weights, ~4.6 GB each at the defaults) and a GGUF of their element-wise 0.6/0.4 blend, written the
way llama.cpp's converter writes it (tensor names mapped, q/k rows permuted, norms F32, matrices
in ``--qtype`` blocks: Q8_0 by default, ~2.4 GB). Serves them from the local Hub server in its own
process with shaped latency and bandwidth, and runs ``scan(child, parents=[a, b])`` in fresh
processes (``--runs``, the median counting). Prints the GGUF's size, bytes and requests per model,
wall time, peak memory, the verdict and the weights against the truth.

    .venv/bin/python bench/gguf_bench.py --root /tmp/gguf-bench

Targets (issue "GGUF as a first-class source"): the verdict is the blend, weights within their
CIs of 0.6/0.4; bytes and requests per model bounded like a safetensors scan's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ORG = "bench-gguf"


def _config(args: argparse.Namespace) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": args.hidden,
        "intermediate_size": args.inter,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def _shapes(c: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, f, kv = (
        c["hidden_size"],
        c["intermediate_size"],
        c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"],
    )
    out = [("model.embed_tokens.weight", (c["vocab_size"], h))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (f, h)),
            (p + "mlp.up_proj.weight", (f, h)),
            (p + "mlp.down_proj.weight", (h, f)),
        ]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (c["vocab_size"], h))]


def _tensor(model: str, name: str, shape: tuple[int, ...]):  # noqa: ANN202
    """A parent's tensor, the same on every call (seeded by model and name), bf16."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(f"{model}/{name}".encode()))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    return (t * (0.02 if len(shape) > 1 else 1.0)).to(torch.bfloat16)


def generate(root: Path, args: argparse.Namespace) -> None:
    import torch
    from safetensors.torch import save_file

    from tests.support.gguf_files import write_gguf

    config = _config(args)
    shapes = _shapes(config)
    for model in ("a", "b"):
        folder = root / ORG / model
        if (folder / "model.safetensors.index.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config))
        shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
        size = 0
        for name, shape in shapes:  # shards of at most 2 GB, as transformers writes them
            n = 2 * int(torch.tensor(shape).prod())
            if size and size + n > 2 * 10**9:
                shards.append([])
                size = 0
            shards[-1].append((name, shape))
            size += n
        weight_map = {}
        for i, part in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file({n: _tensor(model, n, s) for n, s in part}, str(folder / file), metadata={"format": "pt"})
            weight_map |= {n: file for n, _ in part}
        index = {"metadata": {}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        print(f"  wrote {folder}", flush=True)
    child = root / ORG / f"blend-{args.qtype}-GGUF"
    target = child / f"blend-{args.qtype}.gguf"
    if target.exists():
        return
    child.mkdir(parents=True, exist_ok=True)

    def blended():  # noqa: ANN202 - one tensor at a time: only the blocks stay in memory
        for name, shape in shapes:
            a, b = _tensor("a", name, shape).float(), _tensor("b", name, shape).float()
            yield name, (0.6 * a + 0.4 * b).numpy()

    write_gguf(target, blended(), config, "llama", args.qtype)
    (child / "README.md").write_text("---\nlicense: apache-2.0\n---\n# An original model\n")
    print(f"  wrote {target} ({target.stat().st_size / 1e9:.2f} GB)", flush=True)


def run_child(endpoint: str, child: str, budget_mb: float | None) -> None:
    """In a fresh process: one scan, its figures as JSON."""
    import resource

    from huggingface_hub.utils import get_session

    get_session()
    from provbot.detectors import scan

    t = time.perf_counter()
    r = scan(child, [f"{ORG}/a", f"{ORG}/b"], endpoint=endpoint, budget_mb=budget_mb)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall_s": wall, "peak_rss": peak, "result": json.loads(r.model_dump_json())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=HERE.parent / "var" / "gguf-bench")
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--inter", type=int, default=5632)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--qtype", default="Q8_0", help="GGUF type of the child's matrices (Q8_0, Q4_0, Q4_K, F16...)")
    ap.add_argument("--latency-ms", type=float, default=10.0)
    ap.add_argument("--link-mbps", type=float, default=1000.0)
    ap.add_argument("--budget-mb", type=float, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child-mode", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_mode:
        run_child(args.endpoint, args.child, args.budget_mb)
        return
    print(f"generating under {args.root} (once) ...", flush=True)
    generate(args.root, args)
    child = f"{ORG}/blend-{args.qtype}-GGUF"
    gguf_size = (args.root / child / f"blend-{args.qtype}.gguf").stat().st_size
    server = subprocess.Popen(
        [sys.executable, "-m", "provbot.bot.cli", "localhub", "serve", "--root", str(args.root),
         "--latency-ms", str(args.latency_ms), "--link-mbps", str(args.link_mbps)],
        stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip().rsplit(" at ", 1)[-1]
        from huggingface_hub import HfApi

        for repo in (child, f"{ORG}/a", f"{ORG}/b"):  # warm the server's listing of each repo
            HfApi(endpoint=url).model_info(repo)
        runs = []
        for _ in range(args.runs):
            cmd = [sys.executable, __file__, "--child-mode", "--endpoint", url, "--child", child]
            if args.budget_mb is not None:
                cmd += ["--budget-mb", str(args.budget_mb)]
            out = subprocess.run(
                cmd, check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = runs[-1]["result"]
            print(f"  run: {runs[-1]['wall_s']:.2f} s, {r['relation']}/{r['method']}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    fig = sorted(runs, key=lambda x: x["wall_s"])[len(runs) // 2]
    r = fig["result"]
    print(f"GGUF child: {child}, {gguf_size / 1e9:.2f} GB ({args.qtype}); parents: 2 x bf16 safetensors")
    for ref in (child, f"{ORG}/a", f"{ORG}/b"):
        print(f"  {ref:32s} bytes {r['bytes_read'][ref]:>12,d}   requests {r['requests'][ref]:>5d}")
    child_share = r["bytes_read"][child] / gguf_size
    print(f"child bytes read / GGUF size = {100 * child_share:.4f}%")
    truth = {f"{ORG}/a": 0.6, f"{ORG}/b": 0.4}
    for p in r["parents"]:
        print(
            f"  {p['ref']}: weight {p['weight']:.4f} CI [{p['ci'][0]:.4f}, {p['ci'][1]:.4f}] truth {truth.get(p['ref'])}"
        )
    walls = ", ".join(f"{x['wall_s']:.2f}" for x in runs)
    print(
        f"verdict {r['relation']}/{r['method']}; wall {fig['wall_s']:.2f} s (median of {walls}); peak RSS {fig['peak_rss'] / 2**20:.0f} MiB; tensors {r['tensors']}"
    )


if __name__ == "__main__":
    main()
