"""Benchmark: sampled vs full weight-lineage scan of a large synthetic MoE merge over HTTP.

Generates (once) three models with the tensor count and shapes of Qwen3-30B-A3B scaled down in
width (bench/synth_moe.py: base, tuned = base + delta, merged = 0.6 tuned + 0.4 base, bf16,
~3.7 GiB each), serves them from the local Hub server with shaped latency and bandwidth, and runs
``scan(merged, parents=[tuned, base])``, each run in a fresh process: sampled (default budget;
``--sampled-runs`` times, 3 by default, the median run counting) and once ``--full``. It prints,
for each: bytes read, requests, wall time, peak memory (RSS), verdict and weights; then the ratios
against the targets, the machine's memory bandwidth measured in the same run, and the full mode's
fit throughput.

    .venv/bin/python bench/scan_bench.py --root /tmp/provbench

Targets (issue "weight-lineage scan"): sampled reads < 0.1% of the full read's bytes, same verdict,
weights within 0.005, >= 100x faster; the full fit runs at >= 50% of memory bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CHILD, PARENTS = "bench/merged", ["bench/tuned", "bench/base"]


def memory_bandwidth_gbs(gib: float = 1.0, repeats: int = 5) -> float:
    """Best-of copy bandwidth (bytes read + written per second) with torch on this machine."""
    import torch

    n = int(gib * 2**30 / 4)
    a = torch.empty(n, dtype=torch.float32).normal_()
    b = torch.empty_like(a)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        b.copy_(a)
        dt = time.perf_counter() - t
        best = max(best, 2 * a.numel() * 4 / dt / 1e9)
    return best


def warm_up_kernels(batch_sums) -> None:  # noqa: ANN001
    """Compile the statistics kernels for the shapes a full scan meets, before any clock starts.

    One tensor (chunks of big ones), a batch, and a big chunk: torch specialises size 1, and each
    new graph costs seconds. Read buffers are 64-byte aligned like torch's own tensors
    (``provbot.detectors.weights.buffers``), so no graph for other alignments is needed.
    """
    import torch

    from provbot.detectors.weights.buffers import aligned_buffer
    from provbot.detectors.weights.fit import FULL_SPARSE_STRIDE

    for rows, n in ((1, 2 * 4096), (2, 2 * 4096), (1, 2**24)):
        # Three distinct inputs, as in a scan: the compiled graph also guards on inputs aliasing.
        xs = [
            torch.frombuffer(aligned_buffer(2 * rows * n), dtype=torch.bfloat16).view(rows, n).zero_() for _ in range(3)
        ]
        batch_sums(xs[0], xs[1:], torch.bfloat16, stride=FULL_SPARSE_STRIDE, compiled=True)


def run_scan_child(endpoint: str, full: bool, budget_mb: float | None) -> None:
    """In a fresh process: run one scan and print its figures as JSON (called via --child-mode)."""
    import resource

    # Imported and loaded before the clock starts, as in the running bot service: the scan is timed,
    # not Python's imports, the settings file's first parse or the making of the HTTP client (which
    # loads the CA bundle: 30-40 ms here), all of which the service does once.
    import huggingface_hub  # noqa: F401
    import huggingface_hub.file_download  # noqa: F401
    import huggingface_hub.hf_api  # noqa: F401
    from huggingface_hub.utils import get_session

    get_session()

    import provbot.detectors.weights.scan as scan_mod
    from provbot.bot.settings import get_settings

    get_settings()

    fit = {"seconds": 0.0, "bytes": 0, "compile_s": 0.0}

    def timed(inner):  # noqa: ANN001, ANN202 - instrumentation only
        def run(children, candidates, *a, **kw):  # noqa: ANN001, ANN002, ANN003
            t = time.perf_counter()
            out = inner(children, candidates, *a, **kw)
            fit["seconds"] += time.perf_counter() - t
            # The bytes the fit reads: every model's values in the dtype they arrive in (bf16 here).
            fit["bytes"] += sum(x.numel() * x.element_size() for x in (children, *candidates))
            return out

        return run

    if full and get_settings().scan.compile != "never":
        # Compile the kernels first and report that one-off cost apart from the fit's throughput.

        t = time.perf_counter()
        warm_up_kernels(scan_mod.batch_sums)
        fit["compile_s"] = time.perf_counter() - t
    # Both paths compute their statistics with batch_sums (samples; batches of streamed tensors), the
    # full one also with the accumulator's finish; only these are timed, not the reads.
    import provbot.detectors.weights.full_stats as full_mod

    scan_mod.batch_sums = timed(scan_mod.batch_sums)
    full_mod.batch_sums = timed(full_mod.batch_sums)
    # Full reads join their batches' sums into one table at the end: part of the fit too.
    finish = full_mod.FullStatsAccumulator.finish

    def timed_finish(self, names):  # noqa: ANN001, ANN202 - instrumentation only
        t = time.perf_counter()
        out = finish(self, names)
        fit["seconds"] += time.perf_counter() - t
        return out

    full_mod.FullStatsAccumulator.finish = timed_finish
    t = time.perf_counter()
    res = scan_mod.scan(CHILD, parents=PARENTS, budget_mb=budget_mb, full=full, endpoint=endpoint)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall_s": wall, "peak_rss": peak, "fit": fit, "result": res.model_dump()}))


def run_fit_alone(root: Path, hold_bytes: int = 2 * 2**30, passes: int = 3) -> None:
    """In a fresh process: the full mode's statistics over every batch of the bench models, timed alone.

    The batches are exactly those a full scan computes (``iter_full_batches`` in file order, from
    local files, into the same ``FullStatsAccumulator``), read untimed into memory ``hold_bytes``
    at a time; then only the accumulator runs on them, timed. Inside the HTTP scan the same work
    shares two cores with a dozen reader threads and the local Hub, so its timing there measures
    that contention as much as the fit.

    Each of ``passes`` passes is followed by a measure of the copy bandwidth in this process: on a
    shared VM both drift by a quarter between minutes, so each fit is compared with the bandwidth
    measured right after it, and the best pass is reported, as the bandwidth itself is a best of 5.
    Every pass is printed.
    """
    from provbot.detectors.weights.fit import batch_sums
    from provbot.detectors.weights.full_stats import FullStatsAccumulator
    from provbot.detectors.weights.reader import canonical_models, iter_full_batches
    from provbot.detectors.weights.sampling import plan_sample
    from provbot.detectors.weights.sources import LocalSource

    t = time.perf_counter()
    warm_up_kernels(batch_sums)
    compile_s = time.perf_counter() - t
    sources = [LocalSource(root / ref, ref=ref) for ref in [CHILD, *PARENTS]]
    plan = plan_sample(canonical_models(sources), None, full=True)
    runs = []
    for _ in range(passes):
        acc = FullStatsAccumulator([s.ref for s in sources], compiled=True)
        held, size = [], 0
        fit = {"seconds": 0.0, "bytes": 0, "batches": 0}

        def flush(last: bool = False) -> None:
            t = time.perf_counter()
            for b in held:
                acc.add(b)
            if last:
                acc.finish([t.name for t in plan.tensors])
            fit["seconds"] += time.perf_counter() - t
            fit["bytes"] += sum(v.numel() * v.element_size() for b in held for v in b.values.values())
            fit["batches"] += len(held)
            held.clear()

        # No read-ahead: nothing is being read while the held batches are timed.
        for batch in iter_full_batches(sources, plan, device="cpu", read_ahead_elements=1):
            held.append(batch)
            size += sum(v.numel() * v.element_size() for v in batch.values.values())
            if size >= hold_bytes:
                flush()
                size = 0
        flush(last=True)
        held.clear()
        acc = None  # freed before the bandwidth is measured
        fit["bandwidth_gbs"] = memory_bandwidth_gbs()
        fit["share"] = fit["bytes"] / fit["seconds"] / 1e9 / fit["bandwidth_gbs"]
        runs.append(fit)
    best = max(runs, key=lambda r: r["share"])
    print(json.dumps({**best, "compile_s": compile_s, "passes": runs}))


def fit_alone_in_subprocess(root: Path) -> dict:
    cmd = [sys.executable, __file__, "--fit-alone", "--root", str(root)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scan_in_subprocess(endpoint: str, full: bool, budget_mb: float | None) -> dict:
    cmd = [sys.executable, __file__, "--child-mode", "--endpoint", endpoint]
    if full:
        cmd.append("--full")
    if budget_mb is not None:
        cmd += ["--budget-mb", str(budget_mb)]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(name: str, fig: dict) -> str:
    r = fig["result"]
    weights = ", ".join(f"{p['ref']}={p['weight']:.4f} [{p['ci'][0]:.4f}, {p['ci'][1]:.4f}]" for p in r["parents"])
    return (
        f"{name:8s} bytes={sum(r['bytes_read'].values()):>14,d} requests={sum(r['requests'].values()):>7,d} "
        f"wall={fig['wall_s']:8.2f}s peak_rss={fig['peak_rss'] / 2**20:8.0f} MiB  "
        f"verdict={r['relation']}/{r['method']} r2={r['fit_r2']} z={r['z']:.0f}  {weights}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=HERE.parent / "var" / "bench-hub")
    ap.add_argument("--latency-ms", type=float, default=10.0)
    ap.add_argument("--link-mbps", type=float, default=1000.0, help="one link shared by all responses, megabits/s")
    ap.add_argument("--budget-mb", type=float, default=None, help="sampled scan budget per model (default: settings)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument(
        "--sampled-runs", type=int, default=3, help="sampled scans, each in a fresh process; the median counts"
    )
    ap.add_argument("--child-mode", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fit-alone", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_mode:
        run_scan_child(args.endpoint, args.full, args.budget_mb)
        return
    if args.fit_alone:
        run_fit_alone(args.root)
        return

    if not (args.root / CHILD / "model.safetensors.index.json").exists():
        print(f"generating the synthetic MoE family under {args.root} ...", flush=True)
        subprocess.run(
            [sys.executable, str(HERE / "synth_moe.py"), str(args.root), "--hidden", str(args.hidden)], check=True
        )
    # The server runs in its own process, as the Hub would: its CPU time is not the scanner's.
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provbot.bot.cli",
            "localhub",
            "serve",
            "--root",
            str(args.root),
            "--latency-ms",
            str(args.latency_ms),
            "--link-mbps",
            str(args.link_mbps),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )
    try:
        url = server.stdout.readline().strip().rsplit(" at ", 1)[-1]
        print(f"local Hub {url}: latency {args.latency_ms} ms/request, one {args.link_mbps} Mbit/s link", flush=True)
        # The Hub is always up and warm: list each repo and ask for each file once, so that the first
        # timed scan does not pay for the local server's cold start (its first walk of the repo
        # folders, its first file answers).
        from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

        for repo in [CHILD, *PARENTS]:
            info = HfApi(endpoint=url).model_info(repo)
            for f in info.siblings or []:
                get_hf_file_metadata(hf_hub_url(repo, f.rfilename, revision=info.sha, endpoint=url))
        # A sampled scan takes about a second, which a shared VM's noise moves by a quarter: it runs
        # several times, each in a fresh process, and the median run stands for it (all are printed).
        runs = []
        for i in range(args.sampled_runs):
            runs.append(scan_in_subprocess(url, full=False, budget_mb=args.budget_mb))
            print(summarize(f"sampled{i + 1}", runs[-1]), flush=True)
        sampled = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
        full = scan_in_subprocess(url, full=True, budget_mb=None)
        print(summarize("full", full), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    alone = fit_alone_in_subprocess(args.root)
    # Measured last: Linux carries a process's peak RSS across fork+exec, so allocating the
    # bandwidth buffers first would inflate the scans' peak-memory figures.
    bw = memory_bandwidth_gbs()
    s, f = sampled["result"], full["result"]
    share = sum(s["bytes_read"].values()) / sum(f["bytes_read"].values())
    speed = full["wall_s"] / sampled["wall_s"]
    fw = {p["ref"]: p["weight"] for p in f["parents"]}
    dw = max((abs(p["weight"] - fw.get(p["ref"], 0.0)) for p in s["parents"]), default=float("nan"))
    fit_gbs = full["fit"]["bytes"] / full["fit"]["seconds"] / 1e9 if full["fit"]["seconds"] else float("nan")
    same = (s["relation"], s["method"]) == (f["relation"], f["method"])
    print(f"tensors per model: {f['tensors']:,d} compared (full), {s['tensors']:,d} sampled")
    print(f"bytes: sampled/full = {100 * share:.4f}%   (target < 0.1%)")
    print(f"verdict: same = {same}; max |weight difference| = {dw:.5f}   (target <= 0.005)")
    walls = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
    print(
        f"speed: full/sampled wall time = {speed:.1f}x, median of {len(runs)} sampled runs ({walls} s; "
        f"{full['wall_s'] / max(r['wall_s'] for r in runs):.1f}x against the slowest)   (target >= 100x)"
    )
    alone_gbs = alone["bytes"] / alone["seconds"] / 1e9
    passes = "; ".join(
        f"{p['bytes'] / p['seconds'] / 1e9:.2f} GB/s vs {p['bandwidth_gbs']:.1f} = {100 * p['share']:.0f}%"
        for p in alone["passes"]
    )
    print(f"memory bandwidth (torch copy, read+write, best of 5) = {bw:.2f} GB/s at the end of the run")
    print(
        f"full-mode fit, every batch of the scan timed alone = {alone_gbs:.2f} GB/s of weights as stored "
        f"({alone['bytes'] / 1e9:.1f} GB in {alone['seconds']:.2f} s, {alone['batches']} batches) "
        f"= {100 * alone['share']:.0f}% of the {alone['bandwidth_gbs']:.1f} GB/s copy bandwidth measured right after it "
        f"(target >= 50%; passes: {passes}); compiling the kernels first: {alone['compile_s']:.1f} s"
    )
    print(
        f"full-mode fit inside the HTTP scan (sharing the cores with the reads and the server) = {fit_gbs:.2f} GB/s: "
        f"{full['fit']['seconds']:.1f} s of the full scan's {full['wall_s']:.0f} s "
        f"(plus {full['fit']['compile_s']:.1f} s compiling the kernels before the scan)"
    )


if __name__ == "__main__":
    main()
