"""The bot's HTTP app: ``POST /webhook`` (Hub webhooks), ``GET /healthz``, ``GET /metrics`` and the
moderator console under ``/console`` (unless ``console.enabled`` is false).

Database work runs in a worker thread, never on the event loop, so a slow database cannot stall
other requests.

>>> from provbot.bot.service.context import BotContext
>>> from provbot.bot.settings import Settings
>>> app = make_app(BotContext.build(Settings(database_url="sqlite://")), wake=lambda: None)
>>> [r.path for r in app.routes]
['/webhook', '/healthz', '/metrics', '/console']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from provbot.bot.db.leases import POLLER_LEASE, LeaseStore
from provbot.bot.db.models_bot import utcnow
from provbot.bot.service.context import BotContext
from provbot.bot.service.events import MentionEvent, UploadEvent
from provbot.bot.service.web.webhook import WebhookRejected, check_secret, parse_webhook, read_body

log = logging.getLogger(__name__)


def make_app(
    ctx: BotContext,
    *,
    wake: Callable[[], None],
    started_at: float | None = None,
    workers: Any | None = None,
    ownership: Any | None = None,
) -> Starlette:
    """The Starlette app; ``wake`` tells the workers that a job was queued; ``workers`` (this process's
    WorkerPool) is shown on the console's jobs page; ``ownership`` (its PollOwnership) tells /healthz
    whether this process is the one that polls."""
    started = started_at if started_at is not None else time.time()

    async def webhook(request: Request) -> Response:
        m = ctx.metrics
        secret = ctx.settings.bot.webhook_secret
        try:
            check_secret(request.headers.get("x-webhook-secret"), secret.get_secret_value() if secret else None)
            event = parse_webhook(await read_body(request))
        except ClientDisconnect:  # the caller hung up mid-body: nothing to answer, nothing went wrong here
            m.webhooks.labels(outcome="disconnected").inc()
            log.info("webhook caller disconnected before sending its whole body")
            return Response(status_code=400)
        except WebhookRejected as exc:
            m.webhooks.labels(outcome=f"rejected_{exc.status}").inc()
            await run_in_threadpool(
                ctx.audit.record, "error", message=f"webhook rejected: {exc}", data={"status": exc.status}
            )
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        b = ctx.settings.bot
        if isinstance(event, UploadEvent) and b.scan_uploads_from_webhooks:
            kind, key = "upload", f"upload:{event.repo}@{event.revision}"
        elif isinstance(event, MentionEvent) and event.may_mention(b.username):
            kind, key = "mention", f"mention:{event.repo}:{event.comment_id or f'{event.discussion_num}:first'}"
        else:
            m.webhooks.labels(outcome="ignored").inc()
            return JSONResponse({"status": "ignored"})
        job_id = await run_in_threadpool(ctx.enqueue, kind, key, event.model_dump(), repo=event.repo)
        m.webhooks.labels(outcome="queued" if job_id else "replay").inc()
        wake()
        return JSONResponse(
            {"status": "queued" if job_id else "duplicate", "job": job_id}, status_code=202 if job_id else 200
        )

    def poller_state() -> dict[str, Any]:
        # Who walks the listings, from the lease row: with several processes on one database, one does.
        lease = LeaseStore(ctx.db).get(POLLER_LEASE)
        owner = lease.owner if lease is not None else None
        expires = lease.expires_at if lease is not None else None
        return {
            "owner": owner,
            "fence": lease.fence if lease is not None else 0,
            "expires_at": expires.isoformat() if expires else None,
            "live": owner is not None and expires is not None and expires > utcnow(),
            "this_process": ownership is not None and owner is not None and owner == ownership.owner,
        }

    async def healthz(request: Request) -> Response:
        try:
            counts = await run_in_threadpool(ctx.queue.counts)
            poller = await run_in_threadpool(poller_state)
        except Exception as exc:  # the database is down: unhealthy, not a crash
            return JSONResponse({"status": "error", "error": type(exc).__name__}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "mode": ctx.settings.bot.mode,
                "jobs": counts,
                "poller": poller,
                "uptime_s": round(time.time() - started, 1),
            }
        )

    async def metrics(request: Request) -> Response:
        for state, n in (await run_in_threadpool(ctx.queue.counts)).items():
            ctx.metrics.queue.labels(state=state).set(n)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/webhook", webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if ctx.settings.console.enabled:  # the moderator console (docs/console.md)
        from provbot.bot.service.console.app import make_console

        routes.append(Mount("/console", app=make_console(ctx, wake=wake, workers=workers)))
    return Starlette(routes=routes)
