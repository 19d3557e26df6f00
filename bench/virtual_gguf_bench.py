"""Benchmark: a parent-given scan of a 70B Q4_K GGUF against its safetensors parents, at real size.

The local Hub serves ``bot/localhub/virtual/specs/llama-70b.toml`` in its own process (nothing on
disk): the 70.6B base (30 bf16 shards), its fine-tune, and the 39.7 GB Q4_K GGUF of the base, with
CDN redirects, ``--latency-ms`` per request and a 1 Gbit/s link. Each run is
``scan(gguf, [base, tune])`` in a fresh process; prints wall time, HTTP requests (redirect hops
included), resolve calls, bytes read, peak RSS and the verdict. ``--runs`` runs, the median counts.

    .venv/bin/python bench/virtual_gguf_bench.py [--latency-ms 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_bench as sb  # noqa: E402  (its server and its verdict in a child process)

SPEC = HERE.parent / "bot" / "localhub" / "virtual" / "specs" / "llama-70b.toml"
BASE, TUNE, GGUF = "virtual/llama-70b", "virtual/llama-70b-tune", "virtual/llama-70b-gguf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--link-mbps", type=float, default=1000.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hub"
        root.mkdir()
        server, url = sb.serve(root, args.latency_ms, args.link_mbps, spec=SPEC, repos=(BASE, TUNE, GGUF))
        try:
            runs = [sb.in_child("verdict", url, GGUF, BASE, TUNE) for _ in range(args.runs)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    for r in runs:
        print(f"  {summarize(r)}; {r['relation']} of {r['weights']}", flush=True)
    print("  bytes by repo:", runs[0]["bytes_by_repo"])
    print("  notes:", *runs[0]["notes"], sep="\n    ")
    median = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "requests", "resolves", "bytes", "peak_rss")}
    print(f"median at {args.latency_ms:.0f} ms: {summarize(median)}")


def summarize(r: dict) -> str:
    return (
        f"wall {r['wall_s']:.2f} s, {r['resolves']} resolves, {r['requests']} requests, "
        f"{r['bytes'] / 2**20:.1f} MiB, peak RSS {r['peak_rss'] / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
