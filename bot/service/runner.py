"""The running service: the scheduler (polls), the workers and the HTTP app (web/app.py), started and stopped together.

Several services may share one database. Each runs its workers; a keeper thread claims and renews
the poller lease (poll/ownership.py), and only while this process holds it does the scheduler run
(so one scheduler at a time uses the shared job store, and one process walks the listings). On
gaining the lease the scheduler polls at once: the previous holder may have died mid-walk.

>>> from provbot.bot.settings import Settings
>>> svc = BotService(BotContext.build(Settings(database_url="sqlite://")), port=0)
>>> [r.path for r in svc.asgi.routes]
['/webhook', '/healthz', '/metrics']
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime

import uvicorn
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from provbot.bot.service.context import BotContext
from provbot.bot.service.handlers import HANDLERS
from provbot.bot.service.poll.ownership import PollOwnership
from provbot.bot.service.poll.poller import Poller
from provbot.bot.service.queue.runs import Executor
from provbot.bot.service.queue.workers import WorkerPool
from provbot.bot.service.redact import install_log_redaction
from provbot.bot.service.web.app import make_app

log = logging.getLogger(__name__)

# APScheduler's persistent store holds jobs by textual reference; the reference resolves to the
# service running in this process.
_ACTIVE: dict[str, BotService] = {}


def scheduled(task: str) -> None:
    """Entry point of the persisted scheduler jobs ('poll' or 'discussions')."""
    svc = _ACTIVE.get("service")
    if svc is not None:
        svc.run_task(task)


class BotService:
    def __init__(
        self,
        ctx: BotContext,
        *,
        host: str | None = None,
        port: int | None = None,
        executor: Executor | None = None,
        schedule: bool = True,
    ) -> None:
        self.ctx = ctx
        b = ctx.settings.bot
        self.host = host or b.webhook_host
        self.port = b.webhook_port if port is None else port
        self.ownership = PollOwnership(ctx)
        self.poller = Poller(ctx, self.ownership)
        self.workers = WorkerPool(ctx, HANDLERS, concurrency=b.workers, executor=executor)
        self.schedule = schedule
        self.scheduler: BackgroundScheduler | None = None
        self._scheduler_lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self.asgi = make_app(
            ctx, wake=self.workers.wake, started_at=self.started_at, workers=self.workers, ownership=self.ownership
        )

    # -- tasks -----------------------------------------------------------------------------------
    def run_task(self, task: str) -> None:
        """Run a scheduled task now, logging (not raising) its errors: the scheduler must keep going."""
        try:
            if task == "poll":
                self.poller.poll()
            elif task == "discussions":
                self.poller.poll_discussions()
            self.workers.wake()
        except Exception as exc:
            log.warning("%s task failed: %s", task, self.ctx.redactor.text(str(exc)))

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BotService:
        install_log_redaction(self.ctx.redactor)
        if self.ctx.settings.bot.webhook_secret is None:
            log.warning(
                "no webhook secret configured (PROVBOT_BOT__WEBHOOK_SECRET): every webhook call will be refused"
            )
        _ACTIVE["service"] = self
        self.ctx.audit.record("service", message="started", data={"mode": self.ctx.settings.bot.mode})
        if self.schedule:
            self._keeper = threading.Thread(target=self._keep_poll_lease, name="provbot-poll-lease", daemon=True)
            self._keeper.start()
        self.workers.start()
        self._start_http()
        return self

    def _keep_poll_lease(self) -> None:
        """Claim or renew the poller lease every third of its length; run the scheduler only while held."""
        interval = max(self.ownership.ttl_s / 3, 0.05)
        while not self._keeper_stop.is_set():
            try:
                held = self.ownership.claim() is not None
            except Exception as exc:  # the database is unreachable: change nothing, the fence guards writes
                log.warning("claiming the poller lease failed: %s", self.ctx.redactor.text(str(exc)))
            else:
                with self._scheduler_lock:
                    if self._keeper_stop.is_set():
                        break
                    if held and self.scheduler is None:
                        self._start_scheduler()
                    elif not held and self.scheduler is not None:
                        self._stop_scheduler()
            self._keeper_stop.wait(interval)

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

    def _start_scheduler(self) -> None:
        b = self.ctx.settings.bot
        # The write bind: on SQLite every scheduler transaction takes the write lock at BEGIN, so it
        # waits for the workers instead of failing to upgrade a read lock ("database is locked").
        store = SQLAlchemyJobStore(engine=self.ctx.db.write_engine, tablename="bot_scheduler_jobs")
        sched = BackgroundScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        sched.start()
        sched.add_job(
            "provbot.bot.service.runner:scheduled",
            "interval",
            args=["poll"],
            id="provbot-poll",
            minutes=b.poll_minutes,
            replace_existing=True,
            next_run_time=datetime.now(UTC),  # the previous holder may have died mid-walk
        )
        if b.watch_discussions:
            sched.add_job(
                "provbot.bot.service.runner:scheduled",
                "interval",
                args=["discussions"],
                id="provbot-discussions",
                minutes=b.discussions_poll_minutes,
                replace_existing=True,
            )
        self.scheduler = sched

    def _start_http(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.asgi, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="provbot-http"
        )
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started and time.time() < deadline:
            time.sleep(0.02)

    def stop(self, timeout_s: float = 4.0) -> None:
        """Stop within ``timeout_s``: no new jobs, waits between retries cut short, running jobs left
        to their leases (another worker, or the next start, runs them again: nothing is lost)."""
        deadline = time.monotonic() + timeout_s
        self.ctx.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        self._keeper_stop.set()
        if self._keeper is not None:  # a claim under way ends first, or it could re-take the lease after release
            self._keeper.join(timeout=max(min(1.0, deadline - time.monotonic() - 2.0), 0.1))
        with self._scheduler_lock:
            self._stop_scheduler()
        self.ownership.release()  # another process polls at once; a walk still running here is fenced off
        self.workers.stop(wait=False, timeout_s=max(deadline - time.monotonic() - 1.0, 0.1))
        if self._thread is not None:
            self._thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        if _ACTIVE.get("service") is self:
            _ACTIVE.pop("service", None)
        self.ctx.audit.record("service", message="stopped", data={"jobs_left_running": self.workers.busy})

    def __enter__(self) -> BotService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no job is queued (and due) or running; True when that happened in time."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ctx.queue.idle() and self.workers.busy == 0:
                return True
            time.sleep(0.05)
        return False
