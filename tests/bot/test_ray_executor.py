"""The Ray executor on a real local Ray (2 CPUs): a real scan of tiny models runs in a Ray task,
exactly once; failures follow the queue's rules, including a Ray worker that dies mid-job."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'provbot[ray]')")

from provbot.bot.db.jobs import JobView  # noqa: E402
from provbot.bot.db.models_bot import Finding  # noqa: E402
from provbot.bot.demo import BASE, MERGE, OTHER, TUNED, generate_models  # noqa: E402
from provbot.bot.service.context import BotContext  # noqa: E402
from provbot.bot.service.queue.executors import ThreadExecutor, build_executor  # noqa: E402
from provbot.bot.service.queue.ray_executor import RayExecutor, RayExecutorError  # noqa: E402
from provbot.bot.service.queue.workers import WorkerPool  # noqa: E402
from provbot.bot.service.runner import BotService  # noqa: E402
from provbot.bot.service.scan.handler import ScanPayload  # noqa: E402
from provbot.bot.settings import Settings  # noqa: E402
from provbot.detectors.errors import NotFoundError  # noqa: E402
from tests.bot.helpers import bot_settings  # noqa: E402

# The test handlers below travel to the Ray workers by value: they need not import this module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[RayExecutor]:
    """One private local Ray for the module (starting one takes seconds); stopped at the end."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Short path: Ray's Unix sockets live under it and socket paths are limited to ~100 bytes.
    temp = tempfile.mkdtemp(prefix="pbray-", dir="/tmp")
    owner = RayExecutor(num_cpus=2, temp_dir=temp).start()
    try:
        yield owner
    finally:
        owner.shutdown(True)
        assert not ray.is_initialized()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo's four tiny Llamas: base, real fine-tune, unrelated, hidden 0.6/0.4 merge."""
    return generate_models(tmp_path_factory.mktemp("ray-models"), steps=6)


def _wait_terminal(ctx: BotContext, ids: list[int], timeout: float = 90.0) -> list[JobView]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = [ctx.queue.get(i) for i in ids]
        if all(j is not None and j.state in ("done", "failed") for j in jobs):
            return jobs  # type: ignore[return-value]
        time.sleep(0.1)
    raise AssertionError(f"jobs did not finish: {[ctx.queue.get(i) for i in ids]}")


def _context(settings: Settings) -> BotContext:
    ctx = BotContext.build(settings)  # the real scanner: the Ray side builds the same from the settings
    ctx.queue.backoff_base = 0.01  # failures the service records come back at once
    return ctx


def test_scan_job_runs_once_in_a_ray_worker(
    ray_runtime: RayExecutor,
    hub,
    sqlite_url: str,  # noqa: ANN001
    tiny_models: dict[str, Path],
) -> None:
    for repo in (BASE, TUNED, OTHER):
        hub.add_repo(repo, tiny_models[repo])
    sha = hub.add_repo(MERGE, tiny_models[MERGE])
    settings = bot_settings(hub.url, sqlite_url, candidates=[BASE, TUNED, OTHER], min_parameters=0, executor="ray")
    ctx = _context(settings)
    job_id = ctx.enqueue("scan", f"scan:{MERGE}@{sha}", ScanPayload(repo=MERGE, revision=sha).model_dump())
    assert job_id is not None

    # Through the service, as `provbot run` builds it: bot.executor = "ray" picks the Ray executor,
    # which joins the module's runtime (and so leaves it running when the service stops).
    svc = BotService(ctx, port=0, schedule=False).start()
    try:
        assert isinstance(svc.workers.executor, RayExecutor) and svc.workers.executor.started
        svc.workers.wake()
        [job] = _wait_terminal(ctx, [job_id])
    finally:
        svc.stop()
    assert ray.is_initialized()

    assert job.state == "done", job.last_error
    assert (job.attempts, job.completions) == (1, 1)
    assert job.result is not None and job.result["relation"] == "merge"
    ran_on = job.result["ran_on"]
    assert ran_on["executor"] == "ray" and ran_on["pid"] != os.getpid() and ran_on["node_id"]
    with ctx.db.session() as s:
        findings = s.query(Finding).filter_by(repo=MERGE).all()
    assert len(findings) == 1
    f = findings[0]
    assert (f.revision, f.relation, f.status, f.job_id) == (sha, "merge", "pending", job_id)
    weights = {p["ref"].split("@")[0]: p["weight"] for p in f.result["parents"]}
    assert weights[BASE] == pytest.approx(0.6, abs=0.05) and weights[TUNED] == pytest.approx(0.4, abs=0.05)
    scans = [e for e in ctx.audit.query(kind="scan", limit=100) if e.repo == MERGE]
    assert len(scans) == 1


# -- handlers for the failure test (shipped to Ray by value) ---------------------------------------


def flaky(ctx: BotContext, job: JobView) -> dict[str, Any]:
    """Fails with an unexpected error on the first attempt: the queue retries it."""
    if job.attempts < 2:
        raise RuntimeError("flaky upstream")
    return {"ok": True}


def missing_repo(ctx: BotContext, job: JobView) -> dict[str, Any]:
    """A ProvbotError the input caused: failed for good, no retry."""
    raise NotFoundError("repo org/gone not found")


def dies_once(ctx: BotContext, job: JobView) -> dict[str, Any]:
    """Kills its Ray worker process on the first attempt (as an out-of-memory kill would)."""
    if job.attempts < 2:
        os._exit(3)
    return {"ok": True}


def test_failures_follow_the_queue_rules(ray_runtime: RayExecutor, localhub, db_url: str) -> None:  # noqa: ANN001
    ctx = _context(bot_settings(localhub.url, db_url, max_attempts=3, executor="ray"))
    ids = {kind: ctx.enqueue(kind, f"{kind}:1", {"repo": "org/x"}) for kind in ("flaky", "missing", "dies")}
    handlers = {"flaky": flaky, "missing": missing_repo, "dies": dies_once}
    pool = WorkerPool(ctx, handlers, concurrency=2, executor=RayExecutor(), idle_wait=0.05).start()
    try:
        jobs = dict(zip(ids, _wait_terminal(ctx, list(ids.values())), strict=True))
    finally:
        pool.stop()

    flaky_job, missing_job, dies_job = jobs["flaky"], jobs["missing"], jobs["dies"]
    assert (flaky_job.state, flaky_job.attempts, flaky_job.completions) == ("done", 2, 1)
    assert flaky_job.result is not None and flaky_job.result["ran_on"]["pid"] != os.getpid()
    assert (missing_job.state, missing_job.attempts, missing_job.completions) == ("failed", 1, 0)
    assert "NotFoundError: repo org/gone not found" in (missing_job.last_error or "")
    # The dead worker recorded nothing; the service did, under its lease, and the queue retried.
    assert (dies_job.state, dies_job.attempts, dies_job.completions) == ("done", 2, 1)
    errors = [e.message for e in ctx.audit.query(kind="error", limit=100)]
    assert any("flaky upstream" in m for m in errors)
    assert any(f"dies job {ids['dies']}: ray task failed" in m for m in errors)


def test_generic_callables_and_settings(ray_runtime: RayExecutor) -> None:
    executor = RayExecutor()
    assert executor.submit(os.getpid).result(timeout=60) != os.getpid()
    lock = threading.Lock()
    with pytest.raises(RayExecutorError, match="cannot send the job to Ray"):
        executor.submit(lambda: lock.locked())
    executor.shutdown(True)
    assert ray.is_initialized()  # it did not start Ray, so it does not stop it
    with pytest.raises(RayExecutorError, match="shut down"):
        executor.submit(os.getpid)

    plain = Settings(database_url="sqlite://")
    assert isinstance(build_executor(plain, 2), ThreadExecutor)
    chosen = build_executor(plain.model_copy(update={"bot": plain.bot.model_copy(update={"executor": "ray"})}), 3)
    assert isinstance(chosen, RayExecutor) and chosen.num_cpus == 3 and not chosen.started


class _Refusing:
    """An executor whose runtime is gone: every submit raises."""

    def submit(self, fn: Any) -> Any:
        raise RayExecutorError("cannot start or join a local Ray: ConnectionError")

    def shutdown(self, wait: bool) -> None:
        pass


def test_a_refused_submit_hands_the_job_back(sqlite_url: str) -> None:
    ctx = _context(bot_settings("http://127.0.0.1:9", sqlite_url, max_attempts=2))
    job_id = ctx.enqueue("flaky", "flaky:refused", {})
    pool = WorkerPool(ctx, {"flaky": flaky}, concurrency=1, executor=_Refusing(), idle_wait=0.01).start()
    try:
        [job] = _wait_terminal(ctx, [job_id], timeout=30)
    finally:
        pool.stop()
    # Not stuck in "running" until a lease runs out: returned at once, retried, then failed for good.
    assert (job.state, job.attempts, job.completions) == ("failed", 2, 0)
    assert "executor refused the job: RayExecutorError" in (job.last_error or "")


def test_a_dead_cluster_address_is_one_clear_error() -> None:
    import socket

    from provbot.bot.service.queue.ray_executor import _cluster_endpoint, _probe

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayExecutorError, match=f"cannot reach the Ray cluster at ray://127.0.0.1:{port}"):
        _probe(f"ray://127.0.0.1:{port}", timeout=2)
    with pytest.raises(RayExecutorError, match="bad bot.ray_address"):
        _cluster_endpoint("head-without-port")
    assert _cluster_endpoint("10.0.0.5:6379") == ("10.0.0.5", 6379)


def test_rays_token_file_is_private(tmp_path) -> None:  # noqa: ANN001
    from provbot.bot.service.queue.ray_executor import private_token_file

    made = private_token_file(tmp_path / ".ray" / "auth_token")
    assert made.stat().st_mode & 0o777 == 0o600 and (tmp_path / ".ray").stat().st_mode & 0o777 == 0o700
    assert len(made.read_text()) == 64
    loose = tmp_path / "loose" / "auth_token"
    loose.parent.mkdir()
    loose.write_text("x" * 64)
    loose.chmod(0o644)
    assert private_token_file(loose).stat().st_mode & 0o777 == 0o600 and loose.read_text() == "x" * 64
