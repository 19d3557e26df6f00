"""Benchmark: the bot under a simulated Hub day.

The local Hub publishes new repos at a steady rate, a mix of merges (0.5-0.7 A + the rest B), fine-tunes of
A, exact copies of A and unrelated models, every one built here (tiny Llama-shaped safetensors,
distinct weights per upload), and answers about one request in ``--fault-every`` with 429 (a
one-second rate-limit window) or 500/502/503. ``provbot run``'s service (scheduler, poller lease, in-process workers,
the real weight scan against the two candidate parents, ``auto`` mode so every finding that names a parent is posted)
runs on a fresh PostgreSQL database, once per worker count. Per run it prints: uploads per hour
handled, upload-to-finding and poll-to-finding latency p50/p95, jobs lost (uploads without a
finding), jobs completed twice, retries, posts duplicated (a repo with more than one bot
discussion or comment), faults served, and the figures that show what bounds the throughput
(scan time per job, the workers' share of time in scans, CPU-seconds per second of this process,
of PostgreSQL and of the whole machine). The local Hub runs in this process.

    PROVBOT_BENCH_POSTGRES_URL=postgresql+psycopg://user:pw@127.0.0.1:5432/db \\
        .venv/bin/python bench/hubday_bench.py --workers 1 2 4

With ``--executor ray --ray-address auto`` the job bodies run as Ray tasks on a cluster started
beforehand (``ray start --head --num-cpus 4``), in processes of their own; the service, its poller
and the local Hub stay in this process.

Each run creates and drops its own database next to the one in the URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

BASE_A, BASE_B = "lab/base-a", "lab/base-b"
KINDS = ("merge", "finetune", "copy", "unrelated")
BOT_TOKEN = "hf_benchBotToken0000000000000000000"
LAYERS, HIDDEN, FFN, VOCAB = 4, 64, 128, 256


def llama_tensors(seed: int) -> dict[str, np.ndarray]:
    """A tiny Llama layout (names and shapes as transformers writes them), float32."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    out = {"model.embed_tokens.weight": mat(VOCAB, HIDDEN), "lm_head.weight": mat(VOCAB, HIDDEN)}
    out["model.norm.weight"] = np.ones(HIDDEN, np.float32)
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"{p}.self_attn.{name}.weight"] = mat(HIDDEN, HIDDEN)
        out[f"{p}.mlp.gate_proj.weight"] = mat(FFN, HIDDEN)
        out[f"{p}.mlp.up_proj.weight"] = mat(FFN, HIDDEN)
        out[f"{p}.mlp.down_proj.weight"] = mat(HIDDEN, FFN)
        out[f"{p}.input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        out[f"{p}.post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    return out


def variant(kind: str, n: int, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Upload ``n`` of ``kind``: its own weights, related to the bases as the kind says."""
    rng = np.random.default_rng(10_000 + n)
    if kind == "merge":
        w = 0.6 + rng.uniform(-0.1, 0.1)
        return {k: (w * a[k] + (1 - w) * b[k]).astype(np.float32) for k in a}
    if kind == "finetune":
        return {k: (v + 0.02 * rng.standard_normal(v.shape) * v.std()).astype(np.float32) for k, v in a.items()}
    if kind == "copy":
        return dict(a)
    return llama_tensors(50_000 + n)


def write_model(folder: Path, tensors: dict[str, np.ndarray], card: str) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": VOCAB,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").write_text(f"---\nlicense: apache-2.0\n---\n\n{card}\n")
    return folder


class FaultFeeder(threading.Thread):
    """About one request in ``every`` (of any kind) gets a 429 (1 s window) or a 500/502/503.

    A fault is armed after every ``every`` requests the Hub served and hits the next request, so the
    share of faulty answers follows the traffic instead of piling up while the bot is idle.
    """

    def __init__(self, hub, every: int, seed: int) -> None:  # noqa: ANN001
        super().__init__(daemon=True, name="bench-faults")
        self.hub, self.every, self.rng = hub, every, random.Random(seed)
        self.stop = threading.Event()

    def run(self) -> None:
        next_at = self.hub.request_count + self.every
        while not self.stop.wait(0.02):
            if self.hub.request_count < next_at or self.hub.faults.pending():
                continue
            next_at = self.hub.request_count + self.every
            status = self.rng.choice([429, 500, 502, 503])
            if status == 429:
                self.hub.rate_limit("/", count=1, reset_s=1)
            else:
                self.hub.inject("/", status, count=1)


def pg_database(base_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database next to ``base_url``'s; returns its URL and a function that drops it."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"provbot_hubday_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url.set(database=name).render_as_string(hide_password=False), drop


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_TICK = os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s() -> float:
    """CPU seconds of every process named postgres on this machine (the server and its backends)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name == "postgres":
            total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / _TICK


def _machine_busy_s() -> float:
    """CPU seconds all processes on the machine spent busy (other users' load included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK  # all but idle and iowait


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_day(args: argparse.Namespace, workers: int, models: dict[str, Path], bases: dict[str, Path]) -> dict:
    from huggingface_hub import HfApi
    from sqlalchemy import select

    from provbot.bot.db.models_bot import Finding, Job
    from provbot.bot.localhub import LocalHub
    from provbot.bot.service.context import BotContext
    from provbot.bot.service.runner import BotService
    from provbot.bot.settings import BotSettings, Settings

    work = Path(tempfile.mkdtemp(prefix=f"hubday-{workers}w-"))
    db_url, drop = pg_database(args.postgres_url)
    hub = LocalHub(work / "hub").start()
    hub.add_token(BOT_TOKEN, "provbot")
    long_ago = datetime.now(UTC) - timedelta(days=3)
    for repo, folder in bases.items():
        hub.add_repo(repo, folder, created_at=long_ago)
    settings = Settings(
        hub_endpoint=hub.url,
        hub_token=BOT_TOKEN,
        data_dir=work,
        database_url=db_url,
        bot=BotSettings(
            mode="auto",
            min_parameters=0,
            candidates=[BASE_A, BASE_B],
            webhook_secret="bench-webhook-secret",
            webhook_port=0,
            workers=workers,
            poll_minutes=args.poll_seconds / 60,
            lease_seconds=60,
            http_retries=6,
            backoff_max_seconds=2,
            max_attempts=8,
            executor=args.executor,
            ray_address=args.ray_address,
        ),
    )
    ctx = BotContext.build(settings)
    scan_s: list[float] = []
    real_scan = ctx.scanner

    def timed(request):  # noqa: ANN001, ANN202 - times each scan call, for the throughput bound
        t = time.perf_counter()
        try:
            return real_scan(request)
        finally:
            scan_s.append(time.perf_counter() - t)

    # With Ray the scans run in the Ray workers' own contexts: their time is not seen here.
    ctx.scanner = timed
    uploaded: dict[str, float] = {}
    faults = FaultFeeder(hub, args.fault_every, seed=workers)
    svc = BotService(ctx, port=0).start()
    faults.start()
    t0 = time.time()
    cpu0, pg0, machine0 = _cpu_s(), _postgres_cpu_s(), _machine_busy_s()
    try:
        for n, (repo, folder) in enumerate(models.items()):
            due = t0 + n * 3600 / args.rate
            time.sleep(max(0.0, due - time.time()))
            hub.add_repo(repo, folder)
            uploaded[repo] = time.time()
        deadline = time.time() + args.drain_s
        while time.time() < deadline:
            with ctx.db.session() as s:
                found = set(s.scalars(select(Finding.repo)))
            if set(models) <= found and ctx.queue.idle():
                break
            time.sleep(0.5)
        t_end = time.time()
        cpu, pg, machine = _cpu_s() - cpu0, _postgres_cpu_s() - pg0, _machine_busy_s() - machine0
    finally:
        faults.stop.set()
        svc.stop()
    hub.clear_faults()
    with ctx.db.session() as s:
        findings = {f.repo: f for f in s.scalars(select(Finding))}
        jobs = list(s.scalars(select(Job)))
    scans = {j.payload.get("repo"): j for j in jobs if j.kind == "scan"}
    api = HfApi(endpoint=hub.url, token=False)
    duplicated = 0
    for repo in findings:
        threads = [d for d in api.get_repo_discussions(repo) if d.author == "provbot"]
        comments = sum(
            1
            for d in threads
            for e in api.get_discussion_details(repo, d.num).events
            if e.type == "comment" and e.author == "provbot"
        )
        duplicated += len(threads) > 1 or comments > 1
    handled = [r for r in models if r in findings]
    last = max((findings[r].created_at.timestamp() for r in handled), default=t_end)
    up_lat = [findings[r].created_at.timestamp() - uploaded[r] for r in handled]
    poll_lat = [findings[r].created_at.timestamp() - scans[r].created_at.timestamp() for r in handled if r in scans]
    relations: dict[str, int] = {}
    for r in handled:
        relations[findings[r].relation] = relations.get(findings[r].relation, 0) + 1
    span = max(last - t0, 1e-9)
    result = {
        "workers": workers,
        "uploads": len(models),
        "offered_per_h": args.rate,
        "handled": len(handled),
        "handled_per_h": round(len(handled) / span * 3600),
        "upload_to_finding_p50_s": round(pct(up_lat, 0.5), 1),
        "upload_to_finding_p95_s": round(pct(up_lat, 0.95), 1),
        "poll_to_finding_p50_s": round(pct(poll_lat, 0.5), 1),
        "poll_to_finding_p95_s": round(pct(poll_lat, 0.95), 1),
        "lost": len(models) - len(handled),
        "completed_twice": sum(j.completions > 1 for j in jobs),
        "retries": sum(max(j.attempts - 1, 0) for j in jobs),
        "failed_jobs": sum(j.state == "failed" for j in jobs),
        "posts_duplicated": duplicated,
        "faults_served": hub.faults.fired,
        "hub_requests": hub.request_count,
        "scan_s_mean": round(statistics.fmean(scan_s), 2) if scan_s else None,
        "worker_busy": round(sum(scan_s) / (span * workers), 2) if scan_s else None,
        # CPU seconds of this process (bot and local Hub) per wall second; PostgreSQL not counted.
        "process_cpus_busy": round(cpu / max(t_end - t0, 1e-9), 2),
        "postgres_cpus_busy": round(pg / max(t_end - t0, 1e-9), 2),
        "machine_cpus_busy": round(machine / max(t_end - t0, 1e-9), 2),
        "jobs": len(jobs),
        "relations": relations,
        "wall_s": round(t_end - t0, 1),
    }
    hub.stop()
    ctx.db.dispose()
    drop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--uploads", type=int, default=120, help="Uploads per run (a mix of the four kinds).")
    ap.add_argument("--rate", type=float, default=3600.0, help="Uploads published per hour.")
    ap.add_argument("--poll-seconds", type=float, default=5.0, help="bot.poll_minutes, in seconds.")
    ap.add_argument("--fault-every", type=int, default=25, help="About one Hub request in this many gets a 429/5xx.")
    ap.add_argument("--drain-s", type=float, default=600.0, help="Longest wait for the backlog after the last upload.")
    ap.add_argument("--postgres-url", default=os.environ.get("PROVBOT_BENCH_POSTGRES_URL"))
    ap.add_argument(
        "--executor", choices=["threads", "ray"], default="threads", help="bot.executor: where job bodies run."
    )
    ap.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join with --executor ray (e.g. 'auto' after `ray start --head`); default: a private local Ray.",
    )
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "hubday-models")
    args = ap.parse_args()
    logging.disable(logging.INFO)  # the Hub client logs every request at INFO
    if not args.postgres_url:
        raise SystemExit(
            "give --postgres-url or PROVBOT_BENCH_POSTGRES_URL (a PostgreSQL the bench may create databases on)"
        )

    a, b = llama_tensors(1), llama_tensors(2)
    bases = {
        BASE_A: write_model(args.out / "base-a", a, "# base-a"),
        BASE_B: write_model(args.out / "base-b", b, "# base-b"),
    }
    models: dict[str, Path] = {}
    for n in range(args.uploads):
        kind = KINDS[n % len(KINDS)]
        repo = f"up{n // len(KINDS)}/{kind}-{n}"
        models[repo] = write_model(args.out / f"{kind}-{n}", variant(kind, n, a, b), f"# {kind} {n}")
    print(
        f"cpus={os.cpu_count()} uploads={args.uploads} rate={args.rate}/h poll={args.poll_seconds}s 1 request in {args.fault_every} faulted"
    )
    for w in args.workers:
        r = run_day(args, w, models, bases)
        print(json.dumps({"executor": args.executor, **r}), flush=True)


if __name__ == "__main__":
    main()
