"""``provbot run``, ``provbot review ...``, ``provbot audit`` and ``provbot demo``: the bot service.

Examples::

    provbot run                                  # scheduler, webhook endpoint, workers (Ctrl-C stops)
    provbot run --once                           # one poll, run the queue dry, exit (cron style)
    provbot review list                          # findings waiting for a moderator
    provbot review show 3                        # the evidence and the exact text that would be posted
    provbot review approve 3 --as alice
    provbot review reject 4 --as alice --reason "declared in the paper"
    provbot audit --repo org/model --since 2h --json
    provbot demo                                 # the whole story offline, in well under 2 minutes

Settings come from config/default.toml and PROVBOT_* variables (PROVBOT_DATABASE_URL,
PROVBOT_HUB_TOKEN, PROVBOT_BOT__MODE, PROVBOT_BOT__WEBHOOK_SECRET, ...).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from provbot.bot.commands.common import DATABASE as _DB
from provbot.bot.commands.common import choice_option
from provbot.detectors.errors import ConfigError

#: The choices of --mode, --status and --kind (tests/bot/test_cli_help.py checks them against the service).
MODES = ("review", "auto", "dry_run")
STATUSES = ("pending", "approved", "posted", "rejected", "recorded", "held", "all")
AUDIT_KINDS = ("poll", "enqueue", "mention", "scan", "finding", "post", "review", "error", "service", "lease")

review_app = typer.Typer(
    name="review", help="Moderator review of findings before anything is posted.", no_args_is_help=True
)


def _context(database: str | None = None, mode: str | None = None) -> Any:
    from provbot.bot.service.context import BotContext
    from provbot.bot.settings import get_settings

    settings = get_settings()
    updates: dict[str, Any] = {}
    if database:
        updates["database_url"] = database
    if mode:
        updates["bot"] = settings.bot.model_copy(update={"mode": mode})
    return BotContext.build(settings.model_copy(update=updates))


def _masked(url: str) -> str:
    """A database URL fit to print: its password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable database URL)"


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "moderator"


def run(
    once: bool = typer.Option(False, "--once", help="Poll once, run every queued job, then exit."),
    mode: str | None = choice_option(None, "--mode", MODES, "What the bot may post (default: settings bot.mode)."),
    port: int | None = typer.Option(None, "--port", help="Webhook/health/metrics port (default: settings)."),
    database: str | None = _DB,
) -> None:
    """Run the bot: scheduled polls, the webhook endpoint (/webhook, /healthz, /metrics) and workers."""
    from provbot.bot.service.runner import BotService

    ctx = _context(database, mode)
    if once:
        svc = BotService(ctx, port=port, schedule=False)
        try:
            svc.poller.poll()  # skipped while a running service holds the poller lease
            if ctx.settings.bot.watch_discussions:
                svc.poller.poll_discussions()
            while svc.workers.run_once() is not None:
                pass
        finally:
            svc.ownership.release()
        typer.echo(f"database: {_masked(ctx.settings.database_url)}", err=True)
        typer.echo(json.dumps(ctx.queue.counts()))
        return
    svc = BotService(ctx, port=port).start()
    typer.echo(f"provbot running in {ctx.settings.bot.mode} mode on {svc.url} (webhook /webhook, /healthz, /metrics)")
    typer.echo(f"database: {_masked(ctx.settings.database_url)}")
    if ctx.settings.console.enabled:
        typer.echo(f"moderator console: {svc.url}/console/ ({len(ctx.settings.console.accounts)} account(s))")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    first = threading.Thread(target=svc.run_task, args=("poll",), daemon=True)  # not a whole interval's wait
    first.start()
    try:
        stop.wait()
    finally:
        svc.stop()
        if svc.workers.busy:
            # Jobs still running keep their leases and run again after the next start: exit now
            # rather than wait for them (a scan can take minutes; SIGTERM gets 5 seconds).
            typer.echo(f"stopped; {svc.workers.busy} running job(s) will be retried", err=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


@review_app.command("list")
def review_list(
    status: str = choice_option("pending", "--status", STATUSES, "Which findings to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database: str | None = _DB,
) -> None:
    """Findings by status (default: those waiting for a moderator)."""
    from provbot.bot.service.review.decisions import Review

    items = Review(_context(database)).list(status)
    if as_json:
        typer.echo(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
        return
    if not items:
        what = "findings" if status == "all" else f"{status} findings"
        hint = (
            "findings appear as `provbot run` scans models"
            if status == "all"
            else "`provbot review list --status all` lists every finding"
        )
        typer.echo(f"no {what} ({hint})")
    for i in items:
        typer.echo(f"#{i.id}  {i.status:<8} {i.repo}@{i.revision[:12]}  {i.summary}  [{i.origin.split(':')[0]}]")


@review_app.command("show")
def review_show(
    finding_id: int = typer.Argument(..., metavar="ID", help="Finding number (see review list)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database: str | None = _DB,
) -> None:
    """One finding: its evidence and the exact text that would be posted."""
    from provbot.bot.service.review.decisions import Review

    review = Review(_context(database))
    view = review.get(finding_id)
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
        return
    typer.echo(f"finding #{view.id}: {view.status} {view.repo}@{view.revision}")
    if view.reason:
        typer.echo(f"reason: {view.reason}")
    if view.identity and view.identity.get("status") != "ran":
        # The post only says the behaviour check did not complete; moderators see why.
        typer.echo(f"identity: {view.identity.get('status')}: {view.identity.get('reason')}")
    typer.echo("-" * 72)
    typer.echo(review.preview(finding_id))


@review_app.command("approve")
def review_approve(
    finding_id: int = typer.Argument(..., metavar="ID", help="Finding number (see review list)."),
    reviewer: str = typer.Option(
        None, "--as", metavar="NAME", help="Moderator name recorded in the audit log (default: login)."
    ),
    database: str | None = _DB,
) -> None:
    """Approve a pending finding: the running service posts it."""
    from provbot.bot.service.review.decisions import Review

    view = Review(_context(database)).approve(finding_id, reviewer or _default_reviewer())
    typer.echo(f"approved finding #{view.id} ({view.repo}); a post job is queued")


@review_app.command("reject")
def review_reject(
    finding_id: int = typer.Argument(..., metavar="ID", help="Finding number (see review list)."),
    reason: str = typer.Option(..., "--reason", help="Why it should not be posted (kept in the audit log)."),
    reviewer: str = typer.Option(None, "--as", metavar="NAME", help="Moderator name (default: login)."),
    database: str | None = _DB,
) -> None:
    """Reject a pending finding with a reason; nothing is posted."""
    from provbot.bot.service.review.decisions import Review

    view = Review(_context(database)).reject(finding_id, reviewer or _default_reviewer(), reason)
    typer.echo(f"rejected finding #{view.id} ({view.repo})")


def parse_when(value: str | None) -> datetime | None:
    """ISO time, or a duration back from now: ``30m``, ``2h``, ``7d``.

    >>> parse_when("2026-06-01T00:00:00Z").isoformat()
    '2026-06-01T00:00:00+00:00'
    """
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"cannot read time {value!r} (ISO time, or 30m / 2h / 7d)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def audit(
    repo: str | None = typer.Option(None, "--repo", metavar="REPO", help="Only entries about this repo (org/name)."),
    actor: str | None = typer.Option(None, "--actor", metavar="USER", help="Only entries by this user."),
    kind: str | None = choice_option(None, "--kind", AUDIT_KINDS, "Only entries of this kind."),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help="ISO time or 30m / 2h / 7d back from now."),
    until: str | None = typer.Option(None, "--until", metavar="WHEN", help="ISO time or 30m / 2h / 7d back from now."),
    limit: int = typer.Option(200, "--limit", min=1, help="Most entries shown."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    database: str | None = _DB,
) -> None:
    """The audit log, oldest first, filtered."""
    from provbot.bot.db.database import Database
    from provbot.bot.service.audit import AuditLog
    from provbot.bot.settings import get_settings

    db = Database(database or get_settings().database_url)
    db.migrate()
    entries = AuditLog(db).query(
        kind=kind, repo=repo, actor=actor, since=parse_when(since), until=parse_when(until), limit=limit
    )
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if not entries:
        filtered = any(v is not None for v in (kind, repo, actor, since, until))
        typer.echo(
            "no audit entries match these filters"
            if filtered
            else "the audit log is empty: `provbot run` records what the bot does here"
        )
    for e in entries:
        who = f" {e.actor}" if e.actor else ""
        where = f" {e.repo}" if e.repo else ""
        typer.echo(f"{e.at:%Y-%m-%d %H:%M:%S} {e.kind:<8}{who}{where}  {e.message}")


def demo(
    keep: str | None = typer.Option(
        None,
        "--keep",
        metavar="DIR",
        help="Keep the demo's files (models, database, local Hub) in this folder (new, empty, or an earlier demo's).",
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Afterwards leave the bot, its console and the local Hub running until Ctrl-C."
    ),
) -> None:
    """The whole story offline: local Hub, generated models, the bot finds a hidden merge and answers a mention."""
    from provbot.bot.commands.common import require_demo_extra
    from provbot.bot.demo import run_demo

    require_demo_extra("provbot demo")
    run_demo(keep=keep, serve=serve)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.add_typer(review_app, name="review")
    app.command("audit")(audit)
    app.command("demo")(demo)
