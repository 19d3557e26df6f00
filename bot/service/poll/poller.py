"""Find new large uploads: walk the Hub's listings newest-first down to a stored cursor.

Two listings are walked (``created_at`` and ``last_modified``: weights often arrive after the repo
is created). Each keeps a cursor: the newest time seen and the ids at exactly that time (times tie).
The cursor moves only after a whole walk succeeded, so a fault (429, 5xx, timeout) never loses
anything; re-walking is harmless because scan jobs are unique per repo@revision.

Of several processes on one database, only the holder of the poller lease walks
(:mod:`~provbot.bot.service.poll.ownership`); its cursor writes carry the lease's fence, so a
process that lost the lease mid-walk moves no cursor (its enqueued jobs are harmless duplicates).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydantic import BaseModel

from provbot.bot.db.leases import Fence, LeaseLost
from provbot.bot.db.models_bot import utcnow
from provbot.bot.service.context import BotContext
from provbot.bot.service.mentions.parse import strip_non_prose
from provbot.bot.service.poll.ownership import PollOwnership
from provbot.bot.service.web.webhook import MentionEvent
from provbot.detectors.hub import ModelInfo

log = logging.getLogger(__name__)

EXPAND = ["createdAt", "lastModified", "sha", "safetensors", "gguf", "tags"]
_TIME_FIELD = {"created_at": "created_at", "last_modified": "last_modified"}


class WalkReport(BaseModel):
    sort: str
    seen: int
    new: int
    enqueued: list[str]
    skipped: dict[str, int]
    #: The poller lease this walk ran under (owner and fence); None for an unfenced walk.
    owner: str | None = None
    fence: int | None = None


def skip_reason(ctx: BotContext, model: ModelInfo) -> str | None:
    """Why a listed or uploaded model is not scanned (None: scan it). Its size is the Hub's count of
    its safetensors parameters, else of its GGUF model's (a GGUF-only repo)."""
    total = model.parameter_total
    if total is None:
        return "no_weights"
    if total < ctx.settings.bot.min_parameters:
        return "small"
    if ctx.opted_out(model.id) or "provbot-opt-out" in model.tags:
        return "opt_out"
    return None


class Poller:
    def __init__(self, ctx: BotContext, ownership: PollOwnership | None = None) -> None:
        self.ctx = ctx
        self.ownership = ownership or PollOwnership(ctx)

    def poll(self) -> list[WalkReport]:
        """Walk every configured listing once, if this process holds (or can take) the poller lease.

        Returns no report while another process polls, and stops at a listing whose cursor write
        was refused because the lease changed hands meanwhile.
        """
        fence = self.ownership.claim()
        if fence is None:
            self.ctx.metrics.polls.labels(outcome="standby").inc()
            return []
        reports: list[WalkReport] = []
        for sort in self.ctx.settings.bot.poll_sorts:
            try:
                reports.append(self.walk(sort, fence))
            except LeaseLost as exc:
                self.ctx.metrics.polls.labels(outcome="fenced").inc()
                self.ownership.lost(f"{sort} cursor not moved: {exc}")
                break
        return reports

    def walk(self, sort: str, fence: Fence | None = None) -> WalkReport:
        """Walk one listing down to its cursor; with ``fence``, the cursor moves only under that lease."""
        ctx, b = self.ctx, self.ctx.settings.bot
        field = _TIME_FIELD.get(sort)
        if field is None:
            raise ValueError(f"unsupported listing sort {sort!r}")
        position, boundary = ctx.cursors.get(sort)
        floor = position or utcnow() - timedelta(hours=b.initial_lookback_hours)

        def when(m: ModelInfo) -> datetime | None:
            t: datetime | None = getattr(m, field)
            return t

        def stop(m: ModelInfo) -> bool:
            t = when(m)
            return t is not None and t < floor

        try:
            models = ctx.hub.walk_models(sort, EXPAND, stop)
        except Exception as exc:
            ctx.metrics.polls.labels(outcome="error").inc()
            ctx.audit.record("error", message=f"poll {sort}: {exc}", data={"sort": sort, "cursor": str(position)})
            raise
        fresh = [m for m in models if not (when(m) == position and m.id in boundary)]
        enqueued: list[str] = []
        skipped = {"small": 0, "no_weights": 0, "opt_out": 0, "duplicate": 0}
        for m in fresh:
            if (reason := skip_reason(ctx, m)) is not None:
                skipped[reason] += 1
                continue
            revision = getattr(m, "sha", None) or "main"
            payload = {"repo": m.id, "revision": revision, "origin": "poll"}
            if ctx.enqueue("scan", f"scan:{m.id}@{revision}", payload, repo=m.id, revision=revision) is None:
                skipped["duplicate"] += 1
            else:
                enqueued.append(f"{m.id}@{revision}")
        # Advance the cursor to the newest time seen and the ids at exactly that time.
        times = [t for m in models if (t := when(m)) is not None]
        if times:
            newest = max(times)
            ids = {m.id for m in models if when(m) == newest}
            if newest == position:
                ids |= boundary
            ctx.cursors.set(sort, newest, ids, fence=fence)
        ctx.metrics.polls.labels(outcome="ok").inc()
        report = WalkReport(
            sort=sort,
            seen=len(models),
            new=len(fresh),
            enqueued=enqueued,
            skipped=skipped,
            owner=fence.owner if fence else None,
            fence=fence.token if fence else None,
        )
        ctx.audit.record(
            "poll", message=f"{sort}: {len(models)} listed, {len(enqueued)} enqueued", data=report.model_dump()
        )
        return report

    def poll_discussions(self) -> int:
        """For watched repos without a webhook: queue every comment that mentions the bot (once per comment)."""
        ctx, b = self.ctx, self.ctx.settings.bot
        queued = 0
        needle = f"@{b.username}".lower()
        for repo in b.watch_discussions:
            for disc in ctx.hub.list_discussions(repo):
                if getattr(disc, "status", "open") != "open":
                    continue
                details = ctx.hub.discussion_details(repo, disc.num)
                for event in details.events:
                    if getattr(event, "type", "") != "comment" or (event.author or "").lower() == b.username.lower():
                        continue
                    if needle not in strip_non_prose(event.content or "").lower():
                        continue
                    ev = MentionEvent(repo=repo, discussion_num=disc.num, comment_id=event.id)
                    if ctx.enqueue(
                        "mention", f"mention:{repo}:{event.id}", ev.model_dump(), actor=event.author, repo=repo
                    ):
                        queued += 1
        return queued
