"""The running service: scheduler (polls), webhook endpoint, health and metrics, workers.

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

import uvicorn
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provbot.bot.service.context import BotContext
from provbot.bot.service.handlers import HANDLERS
from provbot.bot.service.mentions import MentionEvent, UploadEvent, WebhookRejected, check_secret, parse_webhook
from provbot.bot.service.poller import Poller
from provbot.bot.service.redact import install_log_redaction
from provbot.bot.service.workers import Executor, WorkerPool

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
        self.poller = Poller(ctx)
        self.workers = WorkerPool(ctx, HANDLERS, concurrency=b.workers, executor=executor)
        self.schedule = schedule
        self.scheduler: BackgroundScheduler | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self.asgi = Starlette(
            routes=[
                Route("/webhook", self.webhook, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ]
        )

    # -- HTTP ------------------------------------------------------------------------------------
    async def webhook(self, request: Request) -> Response:
        m = self.ctx.metrics
        secret = self.ctx.settings.bot.webhook_secret
        try:
            check_secret(request.headers.get("x-webhook-secret"), secret.get_secret_value() if secret else None)
            event = parse_webhook(await request.body())
        except WebhookRejected as exc:
            m.webhooks.labels(outcome=f"rejected_{exc.status}").inc()
            self.ctx.audit.record("error", message=f"webhook rejected: {exc}", data={"status": exc.status})
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        b = self.ctx.settings.bot
        if isinstance(event, UploadEvent) and b.scan_uploads_from_webhooks:
            kind, key = "upload", f"upload:{event.repo}@{event.revision}"
        elif isinstance(event, MentionEvent) and event.may_mention(b.username):
            kind, key = "mention", f"mention:{event.repo}:{event.comment_id or f'{event.discussion_num}:first'}"
        else:
            m.webhooks.labels(outcome="ignored").inc()
            return JSONResponse({"status": "ignored"})
        job_id = self.ctx.enqueue(kind, key, event.model_dump(), repo=event.repo)
        m.webhooks.labels(outcome="queued" if job_id else "replay").inc()
        self.workers.wake()
        return JSONResponse(
            {"status": "queued" if job_id else "duplicate", "job": job_id}, status_code=202 if job_id else 200
        )

    async def healthz(self, request: Request) -> Response:
        try:
            counts = self.ctx.queue.counts()
        except Exception as exc:
            return JSONResponse({"status": "error", "error": type(exc).__name__}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "mode": self.ctx.settings.bot.mode,
                "jobs": counts,
                "uptime_s": round(time.time() - self.started_at, 1),
            }
        )

    async def metrics(self, request: Request) -> Response:
        for state, n in self.ctx.queue.counts().items():
            self.ctx.metrics.queue.labels(state=state).set(n)
        return Response(self.ctx.metrics.render(), media_type="text/plain; version=0.0.4")

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
            self._start_scheduler()
        self.workers.start()
        self._start_http()
        return self

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
            "provbot.bot.service.app:scheduled",
            "interval",
            args=["poll"],
            id="provbot-poll",
            minutes=b.poll_minutes,
            replace_existing=True,
        )
        if b.watch_discussions:
            sched.add_job(
                "provbot.bot.service.app:scheduled",
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

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        self.workers.stop()
        if _ACTIVE.get("service") is self:
            _ACTIVE.pop("service", None)
        self.ctx.audit.record("service", message="stopped")

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
