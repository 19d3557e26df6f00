"""What the console's pages show, computed from the stores: queue counts, the finding's evidence,
the rendered post, audit rows as CSV/JSON. No HTTP here (see app.py)."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from markdown_it import MarkdownIt

from provbot.bot.db.audit import AuditEntry
from provbot.bot.db.findings import FindingQuery, FindingView
from provbot.bot.db.jobs import JobView
from provbot.bot.service.console.plots import bar_plot, layer_plot
from provbot.bot.service.publish.render import report_context, significant_parents
from provbot.bot.service.scan.identity_check import load_identity
from provbot.detectors.weights.result import ScanResult

OPEN = ("pending", "held")
DECIDED = ("approved", "posted", "rejected")

# The Hub renders markdown with raw HTML sanitised away; here raw HTML is never rendered at all, and
# links keep only http(s) targets (markdown-it's default validateLink refuses javascript: and data:).
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


_COMMENT = re.compile(r"<!--[^<>]*?-->")


def markdown_html(text: str) -> str:
    """Hub-style markdown to HTML with raw HTML shown as text (hostile text stays inert); the bot's
    own hidden markers (HTML comments, invisible on the Hub) are left out.

    >>> markdown_html("**b** <script>x</script> <!-- provbot:finding:1 -->")
    '<p><strong>b</strong> &lt;script&gt;x&lt;/script&gt;</p>\\n'
    """
    return _MD.render(_COMMENT.sub("", text).rstrip())


def queue_stats(
    waiting: int, decisions: list[tuple[str, datetime, datetime]], now: datetime | None = None
) -> dict[str, Any]:
    """Waiting, reviewed today, median time to review, override rate (rejected share of decided), from
    the open count and each decision's (status, found, decided).

    >>> t = datetime(2026, 6, 1, 12, tzinfo=UTC)
    >>> queue_stats(3, [("rejected", t - timedelta(minutes=30), t), ("posted", t - timedelta(hours=1), t)], now=t)
    {'waiting': 3, 'reviewed_today': 2, 'median_review': '45 min', 'override_rate': '50% (1/2)'}
    """
    now = now or datetime.now(UTC)
    decided = [(st, _utc(found), _utc(at)) for st, found, at in decisions if st in DECIDED]
    today = [d for d in decided if d[2].date() == now.date()]
    waits = [(at - found).total_seconds() for _, found, at in decided]
    rejected = sum(st == "rejected" for st, _, _ in decided)
    median = statistics.median(waits) if waits else None
    return {
        "waiting": waiting,
        "reviewed_today": len(today),
        "median_review": _duration(median) if median is not None else "—",
        "override_rate": f"{100 * rejected / len(decided):.0f}% ({rejected}/{len(decided)})" if decided else "—",
    }


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def finding_query(params: Mapping[str, str]) -> FindingQuery:
    """The queue's filters from the query string; a malformed value is ignored, never an error page.

    >>> finding_query({"status": "held", "since": "not a day", "org": "acme"}).model_dump()
    {'status': 'held', 'kind': '', 'org': 'acme', 'since': None, 'sort': 'newest'}
    """
    try:
        since = date.fromisoformat(params.get("since", "")[:10]) if params.get("since") else None
    except ValueError:
        since = None
    sort = params.get("sort", "newest")
    return FindingQuery(
        status=params.get("status", "open")[:20] or "open",
        kind=params.get("kind", "")[:32],
        org=params.get("org", "")[:100],
        since=since,
        sort=sort if sort in ("newest", "confidence") else "newest",
    )


def finding_page(f: FindingView, post_markdown: str, bot_username: str) -> dict[str, Any]:
    """Everything the finding template shows; texts from the Hub stay plain strings (autoescaped)."""
    result = ScanResult.model_validate(f.result)
    ctx = report_context(
        repo=f.repo,
        revision=f.revision,
        result=result,
        declared=dict(f.declared),
        bot_username=bot_username,
        marker="console",
        identity=load_identity(f.identity),
    )
    declared = [str(b) for b in f.declared.get("base_model") or []]
    found = significant_parents(result)
    identity = load_identity(f.identity)
    bars: list[tuple[str, float, tuple[float, float] | None]] = []
    if identity is not None and identity.status == "ran" and identity.result is not None:
        for c in identity.result.conditions:
            cond = "with system prompt" if c.condition == "with_system" else "without system prompt"
            bars += [(f"{k.label} ({cond})", k.rate, k.ci) for k in c.claims[:3]]
        bars += [(f"backstory overlap: {e.ref}", e.overlap.containment, None) for e in identity.result.candidates]
    return {
        "f": f,
        "result": result,
        "verdict": ctx["verdict"],
        "declared": declared,
        "declared_relation": f.declared.get("base_model_relation"),
        "found": found,
        "undeclared": [p for p in found if p not in declared],
        "total_bytes": sum(result.bytes_read.values()),
        "layer_svg": layer_plot(result.layers),
        "identity": identity,
        "identity_svg": bar_plot(bars),
        "post_markdown": post_markdown,
        "post_html": markdown_html(post_markdown),
        "reproduce": str(ctx["reproduce"]),
        "identity_reproduce": (ctx["identity"] or {}).get("reproduce"),
    }


def worker_rows(running: list[JobView], now: datetime | None = None) -> list[dict[str, Any]]:
    """Per lease owner (a worker process): jobs running, and whether its leases lapsed (the worker
    stopped heartbeating: crashed or hung; another worker takes the job after the lease)."""
    now = now or datetime.now(UTC)
    owners: dict[str, list[JobView]] = {}
    for j in running:
        owners.setdefault(j.lease_owner or "?", []).append(j)
    return [
        {
            "owner": owner,
            "running": len(jobs),
            "kinds": ", ".join(sorted({j.kind for j in jobs})),
            "stale": any(j.lease_expires_at is not None and j.lease_expires_at < now for j in jobs),
        }
        for owner, jobs in sorted(owners.items())
    ]


AUDIT_FIELDS = ("id", "at", "kind", "actor", "repo", "revision", "message", "data")


def audit_csv(rows: list[AuditEntry]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(AUDIT_FIELDS)
    for e in rows:
        cells = [e.id, e.at.isoformat(), e.kind, e.actor or "", e.repo or "", e.revision or "", e.message]
        # A cell starting with = + - @ would run as a formula in a spreadsheet: quote it as text.
        w.writerow([_cell(str(c)) for c in cells] + [json.dumps(e.data, sort_keys=True)])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def audit_json(rows: list[AuditEntry]) -> str:
    return json.dumps([e.model_dump(mode="json") for e in rows], indent=1)


def parse_day(text: str, *, end: bool = False) -> datetime | None:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        return None
    start = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
