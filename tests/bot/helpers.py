"""Helpers for the bot tests: tiny safetensors repos, a scripted scanner, contexts on a test database."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from provbot.bot.service.context import BotContext
from provbot.bot.service.scan.scanner import ScanRequest
from provbot.bot.settings import BotSettings, Settings
from provbot.detectors.weights.result import LayerFit, ParentWeight, ScanResult

BOT_TOKEN = "hf_BotSecretToken0123456789abcdef"
WEBHOOK_SECRET = "whsec-Test-0123456789"
USERS = {"alice": "tok-alice-000000", "mallory": "tok-mallory-00000", "mod": "tok-mod-0000000000"}


def safetensors_bytes(n_params: int = 4096, seed: int = 0) -> bytes:
    """A valid one-tensor safetensors file (F32) with ``n_params`` elements."""
    data = np.random.default_rng(seed).standard_normal(n_params).astype("<f4").tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [n_params], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    buf = io.BytesIO()
    buf.write(len(header).to_bytes(8, "little"))
    buf.write(header)
    buf.write(data)
    return buf.getvalue()


def card(base_model: list[str] | None = None, relation: str | None = None, tags: list[str] | None = None) -> str:
    lines = ["---"]
    if base_model:
        lines.append("base_model:")
        lines += [f"- {b}" for b in base_model]
    if relation:
        lines.append(f"base_model_relation: {relation}")
    if tags:
        lines.append("tags:")
        lines += [f"- {t}" for t in tags]
    lines += ["---", "", "A model."]
    return "\n".join(lines) + "\n"


def model_files(seed: int = 0, n_params: int = 4096, **card_kw: object) -> dict[str, bytes | str]:
    return {
        "model.safetensors": safetensors_bytes(n_params, seed),
        "config.json": '{"model_type": "llama"}',
        "README.md": card(**card_kw),
    }  # type: ignore[arg-type]


def merge_result(child: str, parents: list[str], weights: list[float] | None = None) -> ScanResult:
    weights = weights or [0.6, 0.4][: len(parents)] + [0.0] * max(0, len(parents) - 2)
    return ScanResult(
        child=child,
        relation="merge",
        method="linear",
        parents=[
            ParentWeight(ref=p, weight=w, ci=(w - 0.01, w + 0.01)) for p, w in zip(parents, weights, strict=False)
        ],
        fit_r2=0.998,
        z=1412.5,
        bytes_read={child: 4096, **{p: 4096 for p in parents}},
        tensors=12,
        elements=40000,
        layers=[LayerFit(layer=i, weights=dict(zip(parents, weights, strict=False)), r2=0.99) for i in range(2)],
        base=parents[-1] if parents else None,
        base_source="given" if parents else None,
        weight_spread={p: 0.004 for p in parents},
        notes=["weights constant across layers"],
    )


class ScriptedScanner:
    """Answers scans from a table (repo -> callable), counting calls; ``gate`` can hold a scan open."""

    def __init__(self, default: Callable[[ScanRequest], ScanResult] | None = None) -> None:
        self.calls: list[ScanRequest] = []
        self.table: dict[str, Callable[[ScanRequest], ScanResult]] = {}
        self.default = default or (lambda req: merge_result(req.ref, req.parents))
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, req: ScanRequest) -> ScanResult:
        with self._lock:
            self.calls.append(req)
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        return self.table.get(req.repo, self.default)(req)


def bot_settings(hub_url: str, database_url: str, **bot: object) -> Settings:
    fields: dict[str, object] = {
        "username": "provbot",
        "mode": "review",
        "min_parameters": 1000,
        "candidates": [],
        "moderators": ["mod"],
        "webhook_secret": WEBHOOK_SECRET,
        "workers": 2,
        "lease_seconds": 30.0,
        "http_retries": 4,
        "backoff_max_seconds": 2.0,
        "webhook_port": 0,
        "max_attempts": 4,
    }
    fields.update(bot)
    return Settings(
        hub_endpoint=hub_url, hub_token=BOT_TOKEN, database_url=database_url, bot=BotSettings.model_validate(fields)
    )


def build_ctx(settings: Settings, scanner: ScriptedScanner) -> BotContext:
    ctx = BotContext.build(settings, scanner=scanner, sleep=lambda s: None)
    ctx.queue.backoff_base = 0.01  # retries come back at once in tests
    return ctx


def user_api(hub: object, user: str) -> object:
    """An HfApi acting as one of the test users on the local Hub."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=USERS[user])  # type: ignore[attr-defined]


def upload_and_find(service: object, hub: object, repo: str, files: dict) -> object:
    """Upload ``repo``, let the bot poll and scan it, and return its (pending) finding."""
    from provbot.bot.service.review.decisions import Review

    hub.add_repo(repo, files)  # type: ignore[attr-defined]
    service.poller.poll()  # type: ignore[attr-defined]
    service.workers.wake()  # type: ignore[attr-defined]
    assert service.wait_idle(30)  # type: ignore[attr-defined]
    return next(f for f in Review(service.ctx).list() if f.repo == repo)  # type: ignore[attr-defined]


def approve_and_drain(service: object, finding_id: int, moderator: str = "mod") -> None:
    """Approve a finding as ``moderator`` and wait until the bot has posted it."""
    from provbot.bot.service.review.decisions import Review

    Review(service.ctx).approve(finding_id, moderator)  # type: ignore[attr-defined]
    service.workers.wake()  # type: ignore[attr-defined]
    assert service.wait_idle(30)  # type: ignore[attr-defined]


def spawn_service(cfg: dict) -> subprocess.Popen:
    """A bot service in its own process (tests/bot/crash_service.py), for kill -9 tests."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bot.crash_service", json.dumps(cfg)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_until(cond: Callable[[], object], timeout: float, what: str, *procs: subprocess.Popen) -> None:
    """Poll ``cond`` until true; fail on timeout, or at once when one of ``procs`` exited (with its stderr)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        for proc in procs:
            if proc.poll() is not None and proc.stderr is not None:
                raise AssertionError(f"service exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def migrated_down(db_url: str, target: str, table: str):  # noqa: ANN201
    """The database at ``db_url`` taken down to Alembic revision ``target``; yields ``(engine, step)``,
    ``step("upgrade" | "downgrade", revision)`` running one more command. Afterwards the schema is
    back at head and ``table`` emptied of what the test put there."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from provbot.bot.db import MIGRATIONS_DIR, make_engine

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    engine = make_engine(db_url)

    def step(command_name: str, revision: str) -> None:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            getattr(command, command_name)(cfg, revision)

    step("upgrade", "head")
    try:
        step("downgrade", target)
        yield engine, step
    finally:
        step("upgrade", "head")
        with engine.begin() as conn:
            conn.execute(text(f"delete from {table}"))
        engine.dispose()
