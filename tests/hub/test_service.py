"""The service and Hub faults: a long rate limit reschedules the job instead of holding a worker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from provbot.bot.db.models_bot import utcnow
from provbot.bot.service.context import BotContext
from provbot.bot.service.runner import BotService
from tests.bot.helpers import BOT_TOKEN, ScriptedScanner, bot_settings, model_files


def _context(hub, tmp_path: Path, sleeps: list[float]) -> BotContext:  # noqa: ANN001
    hub.add_token(BOT_TOKEN, "provbot")
    settings = bot_settings(hub.url, f"sqlite:///{tmp_path / 'bot.db'}")
    return BotContext.build(settings, scanner=ScriptedScanner(), sleep=sleeps.append)


def test_a_job_hitting_a_far_rate_limit_is_rescheduled_for_the_reset(localhub, tmp_path: Path) -> None:  # noqa: ANN001
    hub = localhub
    hub.add_repo("lab/x", model_files(n_params=8192))
    sleeps: list[float] = []
    ctx = _context(hub, tmp_path, sleeps)
    ctx.enqueue("scan", "scan:lab/x@main", {"repo": "lab/x", "revision": "main", "origin": "poll"})
    hub.rate_limit("/api/models/lab/x", count=1, reset_s=3600)
    before = utcnow()
    assert BotService(ctx, port=0, schedule=False).workers.run_once() == "queued"
    job = ctx.queue.list(kind="scan")[0]
    assert sleeps == [] and hub.faults.pending() == 0
    assert job.run_after >= before + timedelta(seconds=3590)  # the Hub's reset, not the queue's short backoff
    assert "rate limited until" in (job.last_error or "")


def test_a_short_rate_limit_is_waited_out_in_the_worker(localhub, tmp_path: Path) -> None:  # noqa: ANN001
    hub = localhub
    hub.add_repo("lab/x", model_files())
    sleeps: list[float] = []
    ctx = _context(hub, tmp_path, sleeps)
    hub.rate_limit("/api/models/lab/x", count=1, reset_s=1)
    assert ctx.hub.model_info("lab/x").id == "lab/x"
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 1.0


def test_a_scan_whose_weight_reads_hit_a_far_rate_limit_is_rescheduled(localhub, tmp_path: Path) -> None:  # noqa: ANN001
    hub = localhub
    hub.add_token(BOT_TOKEN, "provbot")
    hub.add_repo("lab/base", model_files(seed=1))
    hub.add_repo("lab/x", model_files(seed=2))
    sleeps: list[float] = []
    # The real scanner: its weight reads go through the service's client and policy.
    ctx = BotContext.build(bot_settings(hub.url, f"sqlite:///{tmp_path / 'bot.db'}"), sleep=sleeps.append)
    payload = {"repo": "lab/x", "revision": "main", "origin": "poll", "parents": ["lab/base"]}
    ctx.enqueue("scan", "scan:lab/x@main", payload)
    hub.rate_limit("/lab/x/resolve/", count=1, reset_s=3600)
    before = utcnow()
    assert BotService(ctx, port=0, schedule=False).workers.run_once() == "queued"
    job = ctx.queue.list(kind="scan")[0]
    assert sleeps == [] and job.run_after >= before + timedelta(seconds=3590)
    assert "rate limited until" in (job.last_error or "")


def test_a_job_the_window_cannot_cover_waits_for_the_reset_and_meets_no_429(localhub, tmp_path: Path) -> None:  # noqa: ANN001
    hub = localhub
    hub.add_token(BOT_TOKEN, "provbot")
    hub.options.redirect_resolve = True
    hub.options.quotas = {"resolvers": 2, "api": 100}  # one scan's worth of resolve calls
    hub.add_repo("lab/base", model_files(seed=1))
    hub.add_repo("lab/x", model_files(seed=2))
    hub.add_repo("lab/y", model_files(seed=3))
    sleeps: list[float] = []
    settings = bot_settings(
        hub.url, f"sqlite:///{tmp_path / 'bot.db'}", job_requests={"scan": {"resolvers": 2, "api": 5}}
    )
    ctx = BotContext.build(settings, sleep=sleeps.append)
    for repo in ("lab/x", "lab/y"):
        payload = {"repo": repo, "revision": "main", "origin": "poll", "parents": ["lab/base"]}
        ctx.enqueue("scan", f"scan:{repo}@main", payload)
    workers = BotService(ctx, port=0, schedule=False).workers
    before = utcnow()
    assert workers.run_once() == "done"  # the window was unknown, then two resolve calls used it up
    assert ctx.hub.transport.windows.left("resolvers") == 0
    assert workers.run_once() == "queued"  # deferred, not run into a 429
    waiting = next(j for j in ctx.queue.list(kind="scan") if j.payload["repo"] == "lab/y")
    assert waiting.attempts == 0 and "deferred until" in (waiting.last_error or "")
    assert waiting.run_after >= before + timedelta(seconds=1)
    assert hub.app.quota.refused == 0 and ctx.hub.stats.rate_limited == 0 and sleeps == []


def test_a_job_started_beside_a_running_one_counts_what_that_one_was_promised(localhub, tmp_path: Path) -> None:  # noqa: ANN001
    hub = localhub
    hub.add_token(BOT_TOKEN, "provbot")
    hub.options.redirect_resolve = True
    hub.options.quotas = {"resolvers": 6, "api": 100}
    for n, repo in enumerate(("lab/base", "lab/x", "lab/y")):
        hub.add_repo(repo, model_files(seed=n + 1))
    settings = bot_settings(
        hub.url, f"sqlite:///{tmp_path / 'bot.db'}", job_requests={"scan": {"resolvers": 2, "api": 5}}
    )
    ctx = BotContext.build(settings, sleep=[].append)
    for repo in ("lab/x", "lab/y"):
        payload = {"repo": repo, "revision": "main", "origin": "poll", "parents": ["lab/base"]}
        ctx.enqueue("scan", f"scan:{repo}@main", payload)
    workers = BotService(ctx, port=0, schedule=False).workers
    assert workers.run_once() == "done"  # two of six resolve calls spent: four left
    assert ctx.reservations.held(ctx.hub.transport.windows) == {}  # the finished job gave its share back
    # Another worker has just started a job promised three resolve calls: one is left for this one.
    assert ctx.reservations.start(ctx.hub.transport.windows, "other-worker-job", {"resolvers": 3}) is None
    assert workers.run_once() == "queued"
    waiting = next(j for j in ctx.queue.list(kind="scan") if j.payload["repo"] == "lab/y")
    assert "running jobs still need {'resolvers': 3}" in (waiting.last_error or "")
    assert hub.app.quota.refused == 0
