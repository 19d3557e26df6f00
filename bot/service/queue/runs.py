"""Running one claimed job, wherever it runs: the handler, then the outcome recorded in the queue.

Shared by the in-process pool (workers.py) and the executors that run jobs elsewhere (Ray).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from provbot.bot.db import DatabaseError
from provbot.bot.db.jobs import JobView
from provbot.bot.service.context import BotContext
from provbot.detectors.errors import ProvbotError, RateLimitedError, RemoteError

log = logging.getLogger(__name__)

Handler = Callable[[BotContext, JobView], dict[str, Any] | None]


class Executor(Protocol):
    def submit(self, fn: Callable[[], Any]) -> Future[Any]: ...
    def shutdown(self, wait: bool) -> None: ...


def worker_id() -> str:
    """Unique per process and pool: host, pid and a random suffix (a restarted process is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_claimed(ctx: BotContext, handlers: dict[str, Handler], job: JobView, owner: str) -> str:
    """Run one claimed job and record its outcome; returns the job's new state (or 'lost')."""
    handler = handlers.get(job.kind)
    deferred = _defer_for_budget(ctx, job, owner)
    if deferred is not None:
        return deferred
    try:
        return _run(ctx, handler, job, owner)
    finally:
        ctx.reservations.release(job.id)


def _run(ctx: BotContext, handler: Handler | None, job: JobView, owner: str) -> str:
    try:
        if handler is None:
            raise ProvbotError(f"no handler for job kind {job.kind!r}")
        result = handler(ctx, job) or {}
    except Exception as exc:  # every failure is recorded; none may kill the worker
        message = ctx.redactor.text(f"{type(exc).__name__}: {exc}".splitlines()[0])
        # Hub faults and database hiccups come back later; a ProvbotError the input caused does not.
        retry = isinstance(exc, RemoteError | DatabaseError) or not isinstance(exc, ProvbotError)
        # A long rate limit: the job waits in the queue until the Hub's window resets, not in a worker.
        not_before = exc.reset_at if isinstance(exc, RateLimitedError) else None
        state = ctx.queue.fail(job.id, owner, message, retry=retry, not_before=not_before)
        ctx.metrics.jobs.labels(kind=job.kind, outcome=state or "lost").inc()
        ctx.audit.record(
            "error",
            repo=job.payload.get("repo"),
            message=f"{job.kind} job {job.id}: {message}",
            data={"job_id": job.id, "attempt": job.attempts, "state": state, "retry": retry},
        )
        log.warning("job %s (%s) attempt %s failed: %s -> %s", job.id, job.kind, job.attempts, message, state)
        return state or "lost"
    ok = ctx.queue.complete(job.id, owner, result)
    ctx.metrics.jobs.labels(kind=job.kind, outcome="done" if ok else "lost").inc()
    return "done" if ok else "lost"


def _defer_for_budget(ctx: BotContext, job: JobView, owner: str) -> str | None:
    """Put the job back until the rate-limit window resets when what is left would not cover it."""
    needs = ctx.settings.bot.job_requests.get(job.kind, {})
    windows = ctx.hub.transport.windows
    when = ctx.reservations.start(windows, job.id, needs) if needs else None
    if when is None:
        return None
    reset = datetime.fromtimestamp(when + 1, UTC)  # a second late: the window has surely reset
    left = {b: windows.left(b) for b in needs}
    held = ctx.reservations.held(windows)
    reason = f"deferred until {reset:%H:%M:%S} UTC: needs {dict(needs)} Hub requests, the window has {left} left"
    if held:
        reason += f", of which running jobs still need {held}"
    state = ctx.queue.defer(job.id, owner, reset, reason)
    ctx.metrics.jobs.labels(kind=job.kind, outcome="deferred" if state else "lost").inc()
    log.info("job %s (%s) %s", job.id, job.kind, reason)
    return state or "lost"


@dataclass(frozen=True)
class ClaimedRun:
    """One claimed job as the pool hands it to its executor: call it to run the job here.

    A plain callable for in-process executors; an executor that runs jobs elsewhere (Ray) reads the
    parts instead, since a context (engines, threads) cannot travel: it ships ``job`` and ``owner``
    and rebuilds a context from ``ctx.settings`` on the other side.
    """

    ctx: BotContext
    handlers: dict[str, Handler]
    job: JobView
    owner: str

    def __call__(self) -> str:
        return run_claimed(self.ctx, self.handlers, self.job, self.owner)
