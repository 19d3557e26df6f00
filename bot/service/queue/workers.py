"""Workers that run queued jobs, on a pluggable executor (threads by default).

The pool claims a job only when an executor slot is free, keeps its lease alive with a heartbeat
while it runs, and records the outcome: done, retry with backoff (Hub faults, unexpected errors), or
failed for good (a ProvbotError the user caused, such as a missing repo).

An executor is anything with ``submit(fn) -> Future`` and ``shutdown(wait)``: the default
:class:`~provbot.bot.service.queue.executors.ThreadExecutor` runs jobs in this process. To spread scans over many machines,
``bot.executor = "ray"`` picks :class:`~provbot.bot.service.queue.ray_executor.RayExecutor`: each Ray task opens its
own ``BotContext`` from the same settings and calls :func:`run_claimed`; the queue in the shared
database already arbitrates between processes.

"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from provbot.bot.service.context import BotContext
from provbot.bot.service.queue.executors import build_executor
from provbot.bot.service.queue.runs import ClaimedRun, Executor, Handler, run_claimed, worker_id

log = logging.getLogger(__name__)


class WorkerPool:
    """Claims jobs and runs them on an executor until stopped."""

    def __init__(
        self,
        ctx: BotContext,
        handlers: dict[str, Handler],
        *,
        concurrency: int,
        executor: Executor | None = None,
        idle_wait: float = 0.2,
    ) -> None:
        self.ctx = ctx
        self.handlers = handlers
        self.concurrency = concurrency
        self.executor = executor or build_executor(ctx.settings, concurrency)
        self.owner = worker_id()
        self.idle_wait = idle_wait
        self._running: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def wake(self) -> None:
        """Look for work now (after an enqueue) instead of at the next idle tick."""
        self._wake.set()

    def run_once(self) -> str | None:
        """Claim and run one job synchronously (tests, the demo); None when nothing is due."""
        job = self.ctx.queue.claim(self.owner, kinds=list(self.handlers))
        return None if job is None else run_claimed(self.ctx, self.handlers, job, self.owner)

    def start(self) -> WorkerPool:
        # An executor that needs starting (Ray) starts here, so a bad address fails the service at once.
        start = getattr(self.executor, "start", None)
        if callable(start):
            start()
        for target, name in ((self._dispatch, "provbot-dispatch"), (self._heartbeat, "provbot-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, wait: bool = True, timeout_s: float = 10.0) -> None:
        """Claim nothing more; ``wait``: also wait for running jobs (else they keep their leases)."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(timeout=max(deadline - time.monotonic(), 0.0))
        self.executor.shutdown(wait)

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                free = self.concurrency - len(self._running)
            job = None
            if free > 0:
                try:
                    job = self.ctx.queue.claim(self.owner, kinds=list(self.handlers))
                except Exception:  # a database hiccup must not end the loop
                    log.exception("claiming a job failed")
            if job is None:
                self._wake.wait(self.idle_wait)
                self._wake.clear()
                continue
            try:
                future = self.executor.submit(ClaimedRun(self.ctx, self.handlers, job, self.owner))
            except Exception as exc:  # the executor refused (Ray gone): hand the job back to the queue
                message = self.ctx.redactor.text(
                    f"executor refused the job: {type(exc).__name__}: {exc}".splitlines()[0]
                )
                log.error("job %s: %s", job.id, message)
                try:
                    self.ctx.queue.fail(job.id, self.owner, message, retry=True)
                except Exception:  # the lease expires instead
                    log.exception("returning job %s to the queue failed", job.id)
                self._stop.wait(self.idle_wait)
                continue
            with self._lock:
                self._running[job.id] = future
            future.add_done_callback(lambda _f, jid=job.id: self._finished(jid))

    def _finished(self, job_id: int) -> None:
        with self._lock:
            self._running.pop(job_id, None)
        self._wake.set()

    def _heartbeat(self) -> None:
        interval = max(self.ctx.queue.lease.total_seconds() / 3, 0.05)
        while not self._stop.wait(interval):
            with self._lock:
                ids = list(self._running)
            for job_id in ids:
                try:
                    self.ctx.queue.heartbeat(job_id, self.owner)
                except Exception:
                    log.exception("heartbeat for job %s failed", job_id)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running)
