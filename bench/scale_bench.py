"""Benchmark: request economy at real size, against 400B-class virtual repos on the local Hub.

The local Hub serves the Qwen3-MoE 400B-class family of ``bot/localhub/virtual/specs/qwen3-moe-400b.toml``
(386.5B parameters, 773 GB, 94 shards per model; nothing on disk) with CDN redirects on and a
1 Gbit/s link shared by all answers, in its own process. Every measured step runs in a fresh
process (its own Hub client, no header cache on disk unless the step says so):

(a) parent-given sampled verdict ``scan(merge, [a, b])`` at 10, 50 and 150 ms per request: wall
    time, resolve calls, HTTP requests (redirect hops included), bytes read, peak RSS and the fitted
    weights against the truth (0.6 / 0.4); ``--runs`` runs per latency, the median counts.
(b) at 50 ms: ``index add`` of each 400B-class model (base, a, b; a fresh index), then the merge
    scanned without parents (candidates from that index), with the index lookup's own time.
(c) verdicts one token sustains under the Hub's rate-limit windows (free and PRO quotas), the local
    Hub's windows on: verdicts run back to back for ``--window-seconds``, each started only when
    the token's window (as the answers' RateLimit headers said) has room for it (the service's
    budget rule, ``bot.service.queue.budget.start_after``). Each verdict is of a new upload (another
    merge of a and b); one client serves the run, as in the service, so the parents' headers and
    CDN URLs are reused. To fit a run in minutes the windows are
    shortened ``--time-scale`` times with their quotas divided by the same factor, so the requests
    a token may send per real second are the Hub's.

    .venv/bin/python bench/scale_bench.py [--latencies 10,50,150] [--runs 3] [--window-seconds 120]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SPEC = HERE.parent / "bot" / "localhub" / "virtual" / "specs" / "qwen3-moe-400b.toml"
BASE, A, B, MERGE = (f"virtual/qwen3-moe-400b{s}" for s in ("-base", "-a", "-b", "-merge"))
TRUTH = {A: 0.6, B: 0.4}
TOKEN, USER = "hf_scale_bench", "bench"


# -- the server ---------------------------------------------------------------------------------
def serve(
    root: Path,
    latency_ms: float,
    link_mbps: float,
    *extra: str,
    spec: Path = SPEC,
    repos: tuple[str, ...] = (BASE, A, B, MERGE),
) -> tuple[subprocess.Popen, str]:
    """The local Hub in its own process (its CPU time is not the scanner's), warmed like a live Hub."""
    cmd = [sys.executable, "-m", "provbot.bot.cli", "localhub", "serve", "--root", str(root)]
    cmd += ["--virtual", str(spec), "--redirect", "--latency-ms", str(latency_ms), "--link-mbps", str(link_mbps)]
    cmd += ["--token", f"{TOKEN}={USER}", *extra]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    assert server.stdout is not None
    url = ""
    while not url:
        line = server.stdout.readline()
        if not line:
            raise SystemExit("the local Hub did not start")
        if " at http" in line:
            url = line.strip().rsplit(" at ", 1)[-1]
    from huggingface_hub import HfApi

    for repo in repos:  # the first model info of a repo builds its summary once
        HfApi(endpoint=url, token=TOKEN).model_info(repo)
    return server, url


def in_child(mode: str, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- child processes ----------------------------------------------------------------------------
def _prepare() -> None:
    """Imports and the HTTP session made before any clock starts, as in a running service."""
    import huggingface_hub.hf_api  # noqa: F401
    from huggingface_hub.utils import get_session

    get_session()
    import provbot.detectors.weights.scan  # noqa: F401


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _counts(stats: dict, before: dict | None = None) -> dict:
    before = before or {}
    d = {k: v - before.get(k, 0) for k, v in stats.items()}
    # HTTP requests on the wire: each redirect hop is one more than the client's request count.
    return {"resolves": d["resolves"], "requests": d["requests"] + d["redirects"], "rate_limited": d["rate_limited"]}


def child_verdict(url: str, child: str = MERGE, *parents: str) -> None:
    """``scan(child, parents)`` (default: the merge against a and b), its figures as JSON."""
    _prepare()
    from provbot.detectors.hub.client import HubClient
    from provbot.detectors.weights.scan import scan

    client = HubClient(url, TOKEN)
    t = time.perf_counter()
    res = scan(child, list(parents or (A, B)), endpoint=url, token=TOKEN, client=client)
    wall = time.perf_counter() - t
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_rss": _peak_rss(),
                "bytes": sum(res.bytes_read.values()),
                "bytes_by_repo": res.bytes_read,
                **_counts(client.stats.snapshot()),
                "relation": res.relation,
                "weights": {p.ref: p.weight for p in res.parents},
                "notes": res.notes,
            }
        )
    )


def child_index(url: str, data_dir: str) -> None:
    """Index base, a and b (each timed), then scan the merge without parents."""
    os.environ["PROVBOT_DATA_DIR"] = data_dir  # a fresh index and header cache
    os.environ["PROVBOT_HUB_ENDPOINT"] = url
    _prepare()
    from provbot.bot.index.autoscan import scan_with_index
    from provbot.bot.index.ingest import add_models
    from provbot.bot.index.store import IndexStore
    from provbot.bot.settings import get_settings
    from provbot.detectors.hub.client import HubClient
    from provbot.detectors.weights.opening import shared_client

    store = IndexStore(get_settings().database_url)
    adds = []
    for ref in (BASE, A, B):
        client = HubClient(url)  # as `provbot index add REF`: one client per command
        t = time.perf_counter()
        (outcome,) = add_models([ref], store, endpoint=url, client=client)
        adds.append({"ref": ref, "status": outcome.status, "wall_s": time.perf_counter() - t})
        adds[-1].update(_counts(client.stats.snapshot()))
    shared = shared_client(url, None)
    before = shared.stats.snapshot()
    t = time.perf_counter()
    report, res = scan_with_index(MERGE, store=store, endpoint=url)
    wall = time.perf_counter() - t
    scan = {
        "wall_s": wall,
        "lookup_s": report.seconds,
        "chosen": report.chosen,
        "relation": res.relation,
        "weights": {p.ref: p.weight for p in res.parents},
        "bytes": sum(res.bytes_read.values()),
        **_counts(shared.stats.snapshot(), before),
    }
    print(json.dumps({"adds": adds, "scan": scan, "peak_rss": _peak_rss()}))


def children_spec(folder: Path, n: int) -> Path:
    """The shipped family plus ``n`` more undisclosed merges of a and b: every verdict a new upload."""
    text = SPEC.read_text()
    for i in range(n):
        w = 0.3 + 0.4 * i / max(1, n - 1)
        text += f'\n[repos."virtual/upload-{i:03d}"]\n'
        text += f'recipe = {{ kind = "blend", parts = {{ "{A}" = {w:.3f}, "{B}" = {1 - w:.3f} }} }}\n'
    path = folder / "uploads.toml"
    path.write_text(text)
    return path


def child_windows(url: str, seconds: float, n: int) -> None:
    """Verdicts of new uploads against a and b back to back for ``seconds`` (at most ``n``), each
    waiting until the token's window has room for it. One client for the run, as the service keeps
    one: the parents' headers and CDN URLs are reused, each upload is read for the first time."""
    _prepare()
    from provbot.bot.service.queue.budget import start_after
    from provbot.detectors.hub.client import HubClient
    from provbot.detectors.weights.scan import scan

    client = HubClient(url, TOKEN)  # one client for the run, as the service keeps one
    needs: dict[str, int] = {}
    done, waited, walls, costs = 0, 0.0, [], []
    began = time.monotonic()
    while time.monotonic() - began < seconds and done < n:
        at = start_after(client.transport.windows, needs)
        if at is not None:
            pause = max(0.0, at - time.time())
            waited += pause
            time.sleep(pause)
        before = client.stats.snapshot()
        t = time.perf_counter()
        res = scan(f"virtual/upload-{done:03d}", [A, B], endpoint=url, token=TOKEN, client=client)
        walls.append(time.perf_counter() - t)
        assert res.relation == "merge", res.relation
        done += 1
        after = client.stats.snapshot()
        # What this verdict cost per bucket: the budget the next one waits for.
        api = after["requests"] - before["requests"] - (after["resolves"] - before["resolves"])
        api -= after["cdn_requests"] - before["cdn_requests"]
        needs = {"resolvers": after["resolves"] - before["resolves"], "api": api}
        costs.append(needs["resolvers"])
    elapsed = time.monotonic() - began
    print(
        json.dumps(
            {
                "verdicts": done,
                "elapsed_s": elapsed,
                "waited_s": waited,
                "median_wall_s": statistics.median(walls),
                "needs": needs,
                "resolves_per_verdict": costs,
                **_counts(client.stats.snapshot()),
            }
        )
    )


# -- the parent -----------------------------------------------------------------------------------
def bench_latencies(root: Path, latencies: list[float], runs: int, link_mbps: float) -> list[dict]:
    rows = []
    for latency in latencies:
        server, url = serve(root, latency, link_mbps)
        try:
            results = [in_child("verdict", url) for _ in range(runs)]
        finally:
            server.terminate()
            server.wait(timeout=30)
        for r in results:
            print(f"  {latency:5.0f} ms: {summarize(r)}", flush=True)
        median = sorted(results, key=lambda r: r["wall_s"])[len(results) // 2]
        rows.append({"latency_ms": latency, **median, "walls": [r["wall_s"] for r in results]})
    return rows


def summarize(r: dict) -> str:
    w = ", ".join(f"{k.rsplit('-', 1)[-1]}={v:.4f}" for k, v in r["weights"].items())
    return (
        f"wall {r['wall_s']:.2f} s, {r['resolves']} resolves, {r['requests']} requests, "
        f"{r['bytes'] / 2**20:.1f} MiB, peak RSS {r['peak_rss'] / 2**20:.0f} MiB, {r['relation']} {w}"
    )


def weight_error(weights: dict[str, float]) -> float:
    return max(abs(weights.get(ref, 0.0) - w) for ref, w in TRUTH.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latencies", default="10,50,150", help="ms per request, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="verdicts per latency (fresh processes); the median counts")
    ap.add_argument("--link-mbps", type=float, default=1000.0)
    ap.add_argument("--window-seconds", type=float, default=120.0, help="real seconds of verdicts per plan in (c)")
    ap.add_argument("--time-scale", type=float, default=10.0, help="windows shortened this many times in (c)")
    ap.add_argument("--uploads", type=int, default=200, help="distinct merges served as new uploads in (c)")
    ap.add_argument("--skip", default="", help="parts to skip: a, b, c (comma-separated)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "verdict":
        return child_verdict(*args.rest)
    if args.child == "index":
        return child_index(*args.rest)
    if args.child == "windows":
        return child_windows(args.rest[0], float(args.rest[1]), int(args.rest[2]))

    skip = set(args.skip.split(","))
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hub"
        root.mkdir()
        if "a" not in skip:
            print("(a) parent-given verdict, 3 x 94 shards, CDN redirects:", flush=True)
            latencies = [float(x) for x in args.latencies.split(",")]
            out["verdict"] = bench_latencies(root, latencies, args.runs, args.link_mbps)
            for row in out["verdict"]:
                print(
                    f"  median at {row['latency_ms']:.0f} ms: {summarize(row)}; "
                    f"|weight - truth| <= {weight_error(row['weights']):.4f}",
                    flush=True,
                )
        if "b" not in skip:
            print("(b) index add of each model, then the merge without parents (50 ms):", flush=True)
            server, url = serve(root, 50, args.link_mbps)
            try:
                out["index"] = in_child("index", url, str(Path(tmp) / "data"))
                reference = in_child("verdict", url)
            finally:
                server.terminate()
                server.wait(timeout=30)
            out["index"]["parent_given"] = reference
            for add in out["index"]["adds"]:
                print(
                    f"  index add {add['ref']}: {add['status']}, {add['wall_s']:.2f} s, "
                    f"{add['requests']} requests ({add['resolves']} resolves)",
                    flush=True,
                )
            s = out["index"]["scan"]
            print(
                f"  without parents: {s['wall_s']:.2f} s (lookup {s['lookup_s']:.2f} s), {s['resolves']} resolves, "
                f"{s['requests']} requests, chosen {s['chosen']}, {s['relation']} {s['weights']}; "
                f"parent-given in the same Hub: {reference['wall_s']:.2f} s",
                flush=True,
            )
        if "c" not in skip:
            print(f"(c) verdicts under rate-limit windows (time scale {args.time_scale}, 50 ms):", flush=True)
            from provbot.bot.localhub.quota import PLANS

            out["windows"] = {}
            for plan in ("free", "pro"):
                # Windows time_scale times shorter, quotas divided alike: the Hub's requests per second.
                quotas = {b: int(q / args.time_scale) for b, q in PLANS[plan].items()}
                extra = ["--rate-windows", "--time-scale", str(args.time_scale)]
                extra += [f"--quota={b}={q}" for b, q in quotas.items()]
                spec = children_spec(Path(tmp), args.uploads)
                server, url = serve(root, 50, args.link_mbps, *extra, spec=spec)
                try:
                    r = in_child("windows", url, str(args.window_seconds), str(args.uploads))
                finally:
                    server.terminate()
                    server.wait(timeout=30)
                r["per_hour"] = r["verdicts"] / r["elapsed_s"] * 3600
                steady = statistics.median(r["resolves_per_verdict"][1:] or r["resolves_per_verdict"])
                r["quota_per_hour"] = 3600 / 300 * PLANS[plan]["resolvers"] / max(1, steady)
                out["windows"][plan] = r
                print(
                    f"  {plan}: {r['verdicts']} verdicts in {r['elapsed_s']:.0f} s = {r['per_hour']:.0f}/hour "
                    f"(waited {r['waited_s']:.0f} s for windows; resolves per verdict {r['resolves_per_verdict']}; "
                    f"the quota alone allows "
                    f"{r['quota_per_hour']:.0f}/hour); 429s: {r['rate_limited']}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
