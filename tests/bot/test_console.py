"""The moderator console (bot/service/console): login, sessions, CSRF, roles, pages and decisions,
through Starlette's test client on a real database (no Hub needed: nothing is posted here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from provbot.bot.service.console.auth import hash_password
from provbot.bot.service.context import BotContext
from provbot.bot.service.review.decisions import Review
from provbot.bot.service.web.app import make_app
from provbot.bot.settings import ConsoleAccount, ConsoleSettings, Settings
from tests.bot.helpers import ScriptedScanner, bot_settings, merge_result

PASSWORDS = {"vera": "viewer-pass-1", "mona": "moderator-pass-1", "max": "moderator-pass-2", "ada": "admin-pass-1"}
ROLES = {"vera": "viewer", "mona": "moderator", "max": "moderator", "ada": "admin"}
HASHES = {name: hash_password(pw) for name, pw in PASSWORDS.items()}
HOSTILE = "evil\u202egpj.exe/<script>alert(1)</script>"


def console_settings(**kw: Any) -> ConsoleSettings:
    accounts = {n: ConsoleAccount(password_hash=HASHES[n], role=ROLES[n]) for n in PASSWORDS}  # type: ignore[arg-type]
    return ConsoleSettings(accounts=accounts, session_secret="s3cret-console-key-0123456789", **kw)  # type: ignore[arg-type]


@pytest.fixture
def ctx(db_url: str) -> BotContext:
    settings = bot_settings("http://127.0.0.1:9", db_url)
    settings = Settings.model_validate({**settings.model_dump(), "console": console_settings().model_dump()})
    settings.bot.webhook_secret = None
    return BotContext.build(settings, scanner=ScriptedScanner(), sleep=lambda s: None)


def add_finding(ctx: BotContext, repo: str = "sneaky/original-7b", status: str = "pending", **extra: Any) -> int:
    result = merge_result(repo, ["lab/base", "lab/tuned"])
    fid, _ = ctx.findings.add_once(
        {
            "repo": repo,
            "revision": "a" * 40,
            "origin": "poll",
            "relation": "merge",
            "status": status,
            "summary": "merge (linear): lab/base 0.60, lab/tuned 0.40",
            "result": result.model_dump(mode="json"),
            "declared": {"base_model": [], "base_model_relation": None, "opt_out": False},
            **extra,
        }
    )
    return fid


def client(ctx: BotContext, user: str | None = None, *, follow: bool = True) -> TestClient:
    c = TestClient(make_app(ctx, wake=lambda: None), base_url="http://127.0.0.1", follow_redirects=follow)
    if user is not None:
        login(c, user)
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(c: TestClient, user: str, password: str | None = None) -> Any:
    page = c.get("/console/login")
    return c.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "name": user, "password": password or PASSWORDS[user], "next": ""},
        follow_redirects=False,
    )


def version_of(html: str) -> str:
    m = re.search(r'name="version" value="([^"]+)"', html)
    assert m
    return m.group(1)


def test_pages_need_a_session_and_carry_the_security_headers(ctx: BotContext) -> None:
    c = client(ctx)
    r = c.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert c.post("/console/finding/1/approve", data={}).status_code == 401
    assert c.get("/console/login").headers["x-frame-options"] == "DENY"


def test_login_sets_a_signed_httponly_samesite_cookie_and_wrong_passwords_fail(ctx: BotContext) -> None:
    c = client(ctx)
    assert login(c, "mona", "nope").status_code == 401
    r = login(c, "mona")
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert c.get("/console/").status_code == 200
    # A tampered cookie is no session.
    value = c.cookies.get("provbot_console")
    c.cookies.set("provbot_console", value[:-2] + "xx")
    assert c.get("/console/", follow_redirects=False).status_code == 303
    entries = ctx.audit.query(kind="review")
    assert any(e.message == "console login" and e.actor == "mona" for e in entries)
    assert not any("moderator-pass-1" in (e.message + str(e.data)) for e in ctx.audit.query())


def test_login_needs_the_form_token_and_is_rate_limited(ctx: BotContext) -> None:
    c = client(ctx)
    c.get("/console/login")
    r = c.post("/console/login", data={"csrf": "forged", "name": "mona", "password": PASSWORDS["mona"]})
    assert r.status_code == 403
    codes = [login(c, "mona", f"wrong{i}").status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    assert login(c, "mona").status_code == 429  # even the right password waits out the minute


def test_remote_clients_are_refused_unless_allowed(ctx: BotContext) -> None:
    c = TestClient(make_app(ctx, wake=lambda: None), client=("203.0.113.9", 5000))
    assert c.get("/console/").status_code == 403
    assert c.get("/console/login").status_code == 403 and c.post("/console/login", data={}).status_code == 403
    ctx.settings.console.allow_remote = True
    assert (
        TestClient(make_app(ctx, wake=lambda: None), client=("203.0.113.9", 5000)).get("/console/login").status_code
        == 200
    )


def test_an_oversized_form_carries_no_token(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    r = m.post(f"/console/finding/{fid}/approve", data={"csrf": csrf_of(html), "pad": "x" * 70_000})
    assert r.status_code == 403 and ctx.findings.get(fid).status == "pending"


def test_console_can_be_disabled(ctx: BotContext) -> None:
    ctx.settings.console.enabled = False
    assert client(ctx).get("/console/login").status_code == 404


def test_queue_shows_counts_and_filters(ctx: BotContext) -> None:
    a = add_finding(ctx, "org1/model-a")
    add_finding(ctx, "org2/model-b")
    add_finding(ctx, "org3/model-c", status="recorded")
    Review(ctx).reject(a, "mona", "declared in the paper")
    c = client(ctx, "vera")
    page = c.get("/console/").text
    assert 'id="stat-waiting">1<' in page and "100% (1/1)" in page
    assert "org2/model-b" in page and "org3/model-c" not in page
    assert "org1/model-a" in c.get("/console/?status=rejected").text
    assert "org2/model-b" not in c.get("/console/?status=all&org=org1").text
    assert "org3/model-c" in c.get("/console/?status=all&sort=confidence&kind=merge").text


def test_finding_page_draws_the_plot_and_the_post(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    page = client(ctx, "vera").get(f"/console/finding/{fid}").text
    assert "<svg" in page and "<polyline" in page and "lab/base" in page
    assert "Automated lineage check" in page and 'id="post"' in page
    assert "provbot scan sneaky/original-7b@" in page
    assert 'id="approve"' not in page  # a viewer cannot decide


def test_viewer_cannot_decide_and_moderator_approves_with_audit(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    v = client(ctx, "vera")
    html = v.get(f"/console/finding/{fid}").text
    r = v.post(f"/console/finding/{fid}/approve", data={"csrf": csrf_of(html)})
    assert r.status_code == 403 and ctx.findings.get(fid).status == "pending"
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    assert ctx.findings.get(fid).claimed_by == "mona"
    r = m.post(
        f"/console/finding/{fid}/approve",
        data={"csrf": csrf_of(html), "version": version_of(html)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    f = ctx.findings.get(fid)
    assert f.status == "approved" and f.reviewer == "mona" and f.claimed_by is None
    assert ctx.queue.by_key(f"post:{fid}") is not None
    assert any(e.actor == "mona" and e.message == f"approved finding {fid}" for e in ctx.audit.query(kind="review"))


def test_forms_without_the_csrf_token_are_refused(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    for token in ("", "x" * 43):
        r = m.post(f"/console/finding/{fid}/approve", data={"csrf": token, "version": version_of(html)})
        assert r.status_code == 403 and "CSRF" in r.text
    assert ctx.findings.get(fid).status == "pending"


def test_reject_needs_a_reason_and_hold_then_approve(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    r = m.post(
        f"/console/finding/{fid}/reject", data={"csrf": csrf_of(html), "version": version_of(html), "reason": " "}
    )
    assert r.status_code == 409 and "a reason is required" in r.text
    r = m.post(
        f"/console/finding/{fid}/hold",
        data={"csrf": csrf_of(html), "version": version_of(html), "reason": "ask the lab"},
    )
    assert r.status_code == 200 and ctx.findings.get(fid).status == "held"
    html = m.get(f"/console/finding/{fid}").text
    m.post(
        f"/console/finding/{fid}/reject",
        data={"csrf": csrf_of(html), "version": version_of(html), "reason": "declared in paper"},
    )
    f = ctx.findings.get(fid)
    assert f.status == "rejected" and f.reason == "declared in paper"


def test_a_stale_decision_is_refused(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    stale = version_of(html)
    Review(ctx).hold(fid, "mona", "changed meanwhile")  # the finding changes after the page loaded
    r = m.post(f"/console/finding/{fid}/approve", data={"csrf": csrf_of(html), "version": stale})
    assert r.status_code == 409 and "changed since you loaded it" in r.text
    assert ctx.findings.get(fid).status == "held"


def test_a_claimed_finding_shows_its_holder_and_refuses_others(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    client(ctx, "mona").get(f"/console/finding/{fid}")
    other = client(ctx, "max")
    html = other.get(f"/console/finding/{fid}").text
    assert "Being reviewed by <strong>mona</strong>" in html
    r = other.post(f"/console/finding/{fid}/approve", data={"csrf": csrf_of(html), "version": version_of(html)})
    assert r.status_code == 409 and "being reviewed by mona" in r.text
    admin = client(ctx, "ada")
    html = admin.get(f"/console/finding/{fid}").text
    assert 'id="takeover"' in html
    admin.post(f"/console/finding/{fid}/takeover", data={"csrf": csrf_of(html)})
    assert ctx.findings.get(fid).claimed_by == "ada"


def test_rescan_queues_a_scan_job_against_other_candidates(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    m.post(f"/console/finding/{fid}/rescan", data={"csrf": csrf_of(html), "parents": "lab/other, lab/base"})
    jobs = ctx.queue.list(kind="scan")
    assert jobs and jobs[-1].payload["parents"] == ["lab/base", "lab/other"]
    r = m.post(f"/console/finding/{fid}/rescan", data={"csrf": csrf_of(html), "parents": "not a repo"})
    assert r.status_code == 409


def test_hostile_repo_names_are_escaped_with_bidi_made_visible(ctx: BotContext) -> None:
    fid = add_finding(ctx, repo=HOSTILE)
    c = client(ctx, "vera")
    for page in (c.get("/console/").text, c.get(f"/console/finding/{fid}").text):
        assert "<script>alert(1)" not in page and "\u202e" not in page
        assert "[U+202E]" in page and "&lt;script&gt;" in page


def test_audit_search_and_export(ctx: BotContext) -> None:
    fid = add_finding(ctx, repo="org1/m")
    Review(ctx).reject(fid, "mona", "=HYPERLINK(evil)")
    c = client(ctx, "vera")
    page = c.get("/console/audit?actor=mona&action=review").text
    assert f"rejected finding {fid}" in page
    csv_text = c.get("/console/audit.csv?repo=org1/m").text
    assert csv_text.startswith("id,at,kind") and "rejected finding" in csv_text
    data = c.get("/console/audit.json?actor=mona").json()
    assert data and all(e["actor"] == "mona" for e in data)
    assert "org1/m" not in c.get("/console/audit?since=2999-01-01").text


def test_jobs_page_and_retry_of_a_failed_job(ctx: BotContext) -> None:
    jid = ctx.queue.enqueue("scan", "scan:x@1", {"repo": "x/y", "revision": "1"}, max_attempts=1)
    job = ctx.queue.claim("w1")
    ctx.queue.fail(job.id, "w1", "boom: hub down", retry=False)
    v = client(ctx, "vera")
    html = v.get("/console/jobs").text
    assert "boom: hub down" in html and ">Retry<" not in html
    a = client(ctx, "ada")
    html = a.get("/console/jobs").text
    r = a.post(f"/console/jobs/{jid}/retry", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert r.status_code == 303 and ctx.queue.get(jid).state == "queued"


def test_hash_password_command_makes_a_hash_that_logs_in() -> None:
    from typer.testing import CliRunner

    from provbot.bot.cli import app
    from provbot.bot.service.console.auth import verify_password

    r = CliRunner().invoke(app, ["console", "hash-password", "--stdin"], input="a-long-password\n")
    assert r.exit_code == 0, r.output
    stored = r.output.strip()
    assert stored.startswith("scrypt$") and verify_password("a-long-password", stored)
    assert "a-long-password" not in stored


def test_the_console_client_approves_like_a_click(ctx: BotContext) -> None:
    """What `provbot demo` uses: the console's own endpoints, login, claim, CSRF and version included."""
    from provbot.bot.service.console.client import ConsoleClient, ConsoleClientError

    fid = add_finding(ctx)
    other = add_finding(ctx, "org9/other")
    c = ConsoleClient("http://127.0.0.1")
    c.http = client(ctx, follow=False)  # the same calls, in process
    c.base = "/console"
    with pytest.raises(ConsoleClientError):
        c.login("mona", "wrong")
    c.login("mona", PASSWORDS["mona"])
    assert c.decide(fid, "approve") == "approved"
    with pytest.raises(ConsoleClientError, match="a reason is required"):
        c.decide(other, "reject")
    assert ctx.findings.get(fid).status == "approved" and ctx.findings.get(other).status == "pending"


def test_the_configured_role_counts_not_the_one_in_the_cookie(ctx: BotContext) -> None:
    fid = add_finding(ctx)
    m = client(ctx, "mona")
    html = m.get(f"/console/finding/{fid}").text
    ctx.settings.console.accounts["mona"].role = "viewer"  # demoted while logged in
    r = m.post(f"/console/finding/{fid}/approve", data={"csrf": csrf_of(html), "version": version_of(html)})
    assert r.status_code == 403 and ctx.findings.get(fid).status == "pending"
    del ctx.settings.console.accounts["mona"]  # removed: the session ends
    assert m.get("/console/", follow_redirects=False).status_code == 303


def test_migration_0004_keeps_existing_findings_and_goes_down_again(db_url: str) -> None:
    """0003 -> 0004 on a database with a finding (SQLite and PostgreSQL), then back down."""
    from sqlalchemy import inspect, text

    from tests.bot.helpers import migrated_down

    with migrated_down(db_url, "0003_identity", "bot_findings") as (engine, step):
        assert "claimed_by" not in {c["name"] for c in inspect(engine).get_columns("bot_findings")}
        with engine.begin() as conn:
            conn.execute(
                text(
                    "insert into bot_findings (repo, revision, origin, relation, status, summary, result, declared,"
                    " created_at) values ('o/m', 'r', 'poll', 'merge', 'pending', '', '{}', '{}', '2026-01-01')"
                )
            )
        step("upgrade", "head")
        with engine.begin() as conn:
            row = conn.execute(text("select repo, claimed_by from bot_findings")).one()
        assert tuple(row) == ("o/m", None)


def test_jobs_page_shows_workers_and_lapsed_leases(ctx: BotContext) -> None:
    from datetime import UTC, datetime, timedelta

    from provbot.bot.service.console.views import worker_rows

    ctx.queue.enqueue("scan", "scan:a@1", {}, max_attempts=3)
    ctx.queue.claim("host-a:123")
    running = ctx.queue.list(state="running")
    assert worker_rows(running)[0] == {"owner": "host-a:123", "running": 1, "kinds": "scan", "stale": False}
    assert worker_rows(running, now=datetime.now(UTC) + timedelta(hours=1))[0]["stale"] is True

    class Pool:
        owner, concurrency, busy = "this-host:1", 2, 0

    app = make_app(ctx, wake=lambda: None, workers=Pool())
    c = TestClient(app, base_url="http://127.0.0.1")
    login(c, "vera")
    html = c.get("/console/jobs").text
    assert "host-a:123" in html and "this-host:1" in html and "0 of 2 slots busy" in html


def test_the_session_secret_never_reaches_the_audit_log(ctx: BotContext) -> None:
    ctx.audit.record(
        "error", message="oops s3cret-console-key-0123456789 leaked", data={"k": "s3cret-console-key-0123456789"}
    )
    assert "s3cret-console-key" not in str([e.model_dump() for e in ctx.audit.query()])


@pytest.mark.parametrize(
    "name",
    [
        "provbot.bot.service.console.auth",
        "provbot.bot.service.console.plots",
        "provbot.bot.service.console.views",
        "provbot.bot.service.console.oauth",
        "provbot.bot.service.web.app",
        "provbot.bot.db.findings",
    ],
)
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_the_queue_pages_in_sql_and_keeps_its_filters(ctx: BotContext) -> None:
    """120 open findings: 50 per page, newest first, the filters kept in the page links; a page past
    the end is empty, not an error. Counts come from SQL, not from loading every finding."""
    from provbot.bot.db.findings import FindingQuery

    for i in range(120):
        add_finding(ctx, f"org{i % 3}/model-{i:03d}")
    add_finding(ctx, "Org_x/odd-name")
    rows, total = ctx.findings.search(FindingQuery(org="org1"), limit=50)
    assert total == 40 and len(rows) == 40 and all(f.repo.startswith("org1/") for f in rows)
    assert [f.repo for f in rows][:2] == ["org1/model-118", "org1/model-115"]  # newest first
    assert ctx.findings.search(FindingQuery(org="org_"), limit=50)[1] == 0  # "_" is not a wildcard
    assert ctx.findings.search(FindingQuery(org="ORG_X"), limit=50)[1] == 1
    c = client(ctx, "vera")
    first = c.get("/console/?org=org0").text
    assert "40 findings, page 1 of 1" not in first and "40 findings" in first
    everything = c.get("/console/").text
    assert "121 findings, page 1 of 3" in everything and 'id="stat-waiting">121<' in everything
    assert everything.count('class="status-pending"') == 50
    nxt = re.search(r'rel="next" href="([^"]+)"', everything).group(1).replace("&amp;", "&")
    assert "page=2" in nxt and "status=open" in nxt
    second = c.get(nxt).text
    assert "page 2 of 3" in second and "org1/model-070" in second and "org0/model-021" in second
    assert "org2/model-071" not in second and "org2/model-020" not in second
    last = c.get("/console/?page=3").text
    assert last.count('class="status-pending"') == 21 and 'rel="next"' not in last
    assert "Nothing here." in c.get("/console/?page=99").text
    assert c.get("/console/?page=abc&since=yesterday&sort=%3Cx%3E").status_code == 200
