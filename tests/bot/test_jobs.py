"""The durable job queue on SQLite and PostgreSQL: idempotent keys, exclusive claims, leases, retries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from provbot.bot.db.database import Database
from provbot.bot.db.jobs import JobQueue


class Clock:
    """A clock the test moves by hand (no sleeping)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(db_url: str, clock: Clock) -> JobQueue:
    db = Database(db_url)
    db.migrate()
    return JobQueue(db, lease_seconds=60, backoff_base=10, backoff_max=100, clock=clock)


def test_enqueue_is_idempotent_by_key(queue: JobQueue) -> None:
    first = queue.enqueue("scan", "scan:org/m@1", {"repo": "org/m"})
    assert first is not None
    assert queue.enqueue("scan", "scan:org/m@1", {"repo": "other"}) is None
    assert queue.by_key("scan:org/m@1").payload == {"repo": "org/m"}
    assert queue.counts()["queued"] == 1


def test_concurrent_claims_take_each_job_once(queue: JobQueue) -> None:
    for i in range(12):
        queue.enqueue("scan", f"k{i}", {"i": i})
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := queue.claim(name)) is not None:
            with lock:
                claimed.append(job.id)
            assert queue.complete(job.id, name, {"by": name})

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 12
    assert all(j.completions == 1 and j.state == "done" for j in queue.list())


def test_expired_lease_is_reclaimed_and_old_owner_cannot_complete(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("scan", "k", {})
    job = queue.claim("dead-worker")
    assert job is not None and job.attempts == 1
    assert queue.claim("other") is None  # lease still held
    clock.advance(61)
    again = queue.claim("other")
    assert again is not None and again.id == job_id and again.attempts == 2
    assert not queue.complete(job_id, "dead-worker", {"late": True})  # a zombie result is dropped
    assert not queue.heartbeat(job_id, "dead-worker")
    assert queue.complete(job_id, "other", {"ok": True})
    final = queue.get(job_id)
    assert final.state == "done" and final.completions == 1 and final.result == {"ok": True}


def test_heartbeat_keeps_the_lease(queue: JobQueue, clock: Clock) -> None:
    queue.enqueue("scan", "k", {})
    job = queue.claim("w1")
    for _ in range(3):
        clock.advance(50)
        assert queue.heartbeat(job.id, "w1")
        assert queue.claim("w2") is None


def test_failures_retry_with_backoff_then_fail(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("scan", "k", {}, max_attempts=3)
    job = queue.claim("w")
    assert queue.fail(job_id, "w", "HTTP 503") == "queued"
    assert queue.claim("w") is None  # not due yet: backoff 10 s
    clock.advance(10)
    job = queue.claim("w")
    assert job.attempts == 2
    assert queue.fail(job_id, "w", "HTTP 503") == "queued"
    clock.advance(19)
    assert queue.claim("w") is None  # second backoff is 20 s
    clock.advance(1)
    job = queue.claim("w")
    assert queue.fail(job.id, "w", "HTTP 503") == "failed"
    assert queue.get(job_id).state == "failed" and queue.get(job_id).last_error == "HTTP 503"


def test_permanent_error_fails_at_once(queue: JobQueue) -> None:
    job_id = queue.enqueue("scan", "k", {})
    queue.claim("w")
    assert queue.fail(job_id, "w", "not found", retry=False) == "failed"


def test_job_whose_worker_always_dies_stops_after_max_attempts(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("scan", "k", {}, max_attempts=2)
    for _ in range(2):
        assert queue.claim("w") is not None
        clock.advance(61)  # the worker died: lease expires
    assert queue.claim("w") is None
    assert queue.get(job_id).state == "failed"


def test_scan_jobs_share_one_index_store_per_context(tmp_path, model_zoo) -> None:
    """The candidate index is opened once per context: its family cache serves the next job."""
    from provbot.bot.index.ingest import add_models
    from provbot.bot.service.context import BotContext
    from provbot.bot.service.scan.handler import _index_candidates
    from provbot.bot.settings import Settings

    ctx = BotContext.build(Settings(database_url=f"sqlite:///{tmp_path / 'bot.db'}", hub_endpoint="http://127.0.0.1:9"))
    store = ctx.index_store
    assert ctx.index_store is store
    add_models([str(model_zoo.path(n)) for n in ("llama_base", "llama_a", "llama_b")], store)
    first = _index_candidates(ctx, str(model_zoo.path("llama_linear")), None)
    cached = dict(store._screen_cache)
    second = _index_candidates(ctx, str(model_zoo.path("llama_linear")), None)
    assert first == second and first[0] and len(cached) == 1
    assert ctx.index_store is store and store._screen_cache.keys() == cached.keys()
