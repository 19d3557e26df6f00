"""The console in real headless Chromium (Debian's chromium, driven by Playwright; no browser download).

One local Hub and one running bot (real scan of tiny generated models) serve every test here: log in,
see the finding of the hidden merge, open it, see the plot, approve it and find the comment on the
local Hub and the decision in the audit log; reject with a reason; CSRF and a stale decision refused;
hostile text escaped. Screenshots of the queue and of a finding go to ``PROVBOT_CONSOLE_SCREENSHOTS``
(docs/images when made for the docs) or the test's temporary folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provbot.bot.service.console.auth import hash_password
from provbot.bot.settings import ConsoleAccount, ConsoleSettings
from tests.bot.helpers import BOT_TOKEN, bot_settings

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium chromium-driver)"),
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")

MOD, MOD_PW = "mona", "console-moderator-pw"
HOSTILE_REPO = "evil-org/x\u202egnp.exe"
HOSTILE_CARD = "<img src=x onerror=\"document.title='pwned'\">\u200b[click](javascript:alert(1))"
HOSTILE_UPLOAD = "evil-org/totally-original"  # a copy of the merge whose card declares hostile text
HF_USER, HF_TOKEN = "hugo", "hf_hugo_browser_token"  # signs in with Hugging Face (OAuth)


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from provbot.bot.demo import BASE, MERGE, OTHER, TUNED, generate_models
    from provbot.bot.localhub import LocalHub
    from provbot.bot.service.context import BotContext
    from provbot.bot.service.runner import BotService
    from provbot.bot.settings import ConsoleOAuthSettings
    from tests.hub.scripted import closed_port

    tmp = tmp_path_factory.mktemp("console-browser")
    folders = generate_models(tmp / "models", steps=6)
    hub = LocalHub(tmp / "hub").start()
    svc = None
    try:
        old = datetime.now(UTC) - timedelta(days=3)
        for repo in (BASE, TUNED, OTHER):
            hub.add_repo(repo, folders[repo], created_at=old)
        hub.add_repo(MERGE, folders[MERGE])
        hostile = {p.name: p for p in folders[MERGE].iterdir()}
        card = "---\nbase_model:\n- " + json.dumps(HOSTILE_CARD) + "\n---\n\n" + HOSTILE_CARD + "\n"
        hub.add_repo(HOSTILE_UPLOAD, {**hostile, "README.md": card})
        hub.add_token(BOT_TOKEN, "provbot")
        # Sign in with Hugging Face: the browser meets the Hub as "localhost" and the bot as 127.0.0.1,
        # two sites, as in a deployment (cookies of the bot's site must survive the trip).
        port = closed_port()
        hub.add_oauth_app(
            "provbot-console", "browser-oauth-secret", [f"http://127.0.0.1:{port}/console/oauth/callback"]
        )
        hub.add_token(HF_TOKEN, HF_USER)
        hub.add_org("moderators-org", [HF_USER])
        settings = bot_settings(
            hub.url, f"sqlite:///{tmp / 'bot.db'}", candidates=[BASE, TUNED, OTHER], min_parameters=0
        )
        settings.console = ConsoleSettings(
            accounts={MOD: ConsoleAccount(password_hash=hash_password(MOD_PW), role="moderator")},
            session_secret="browser-test-session-key-0123456789",  # type: ignore[arg-type]
            oauth=ConsoleOAuthSettings(
                enabled=True,
                client_id="provbot-console",
                client_secret="browser-oauth-secret",  # type: ignore[arg-type]
                provider_url=f"http://localhost:{hub.port}",
                public_url=f"http://127.0.0.1:{port}",
                orgs={"moderators-org": "moderator"},
            ),
        )
        svc = BotService(BotContext.build(settings), port=port, schedule=False).start()
        svc.poller.poll()
        svc.workers.wake()
        assert svc.wait_idle(120)
        svc.hub, svc.merge = hub, MERGE  # type: ignore[attr-defined]
        yield svc
    finally:
        if svc is not None:
            svc.stop()
        hub.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, bot: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    pg.goto(f"{bot.url}/console/")
    pg.fill("input[name=name]", MOD)
    pg.fill("input[name=password]", MOD_PW)
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{bot.url}/console/")
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()


def shots() -> Path | None:
    d = os.environ.get("PROVBOT_CONSOLE_SCREENSHOTS")
    return Path(d) if d else None


def add_finding(bot: Any, repo: str, declared: list[str] | None = None) -> int:
    from tests.bot.helpers import merge_result

    result = merge_result(repo, ["lab/tiny-base", "lab/tiny-chat"])
    fid, _ = bot.ctx.findings.add_once(
        {
            "repo": repo,
            "revision": "b" * 40,
            "origin": "poll",
            "relation": "merge",
            "status": "pending",
            "summary": f"merge (linear): {repo}",
            "result": result.model_dump(mode="json"),
            "declared": {"base_model": declared or [], "base_model_relation": None, "opt_out": False},
        }
    )
    return fid


def test_login_open_the_scanned_finding_see_the_plot_and_approve(page: Any, bot: Any, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    row = page.locator("tr", has_text=bot.merge)
    assert row.count() == 1, page.content()
    if shots():
        shots().mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    page.screenshot(path=str((shots() or tmp_path) / "console-queue.png"), full_page=True)
    row.locator("a.repo").click()
    page.wait_for_selector("#layer-plot svg")  # (a flat line has no height: "visible" is the SVG)
    assert page.locator("#layer-plot svg polyline").count() >= 2  # one line per parent
    assert page.locator("#layer-plot svg polygon.ci").count() >= 1  # the CI band
    assert "may derive from lab/tiny-base and lab/tiny-chat" in page.inner_text("#post")
    assert "provbot scan sneaky/original-7b@" in page.inner_text("#reproduce")
    assert page.inner_text("#claim") == "You hold this finding."
    page.screenshot(path=str((shots() or tmp_path) / "console-finding.png"), full_page=True)
    page.click("#approve")
    page.wait_for_selector(".done")
    assert page.inner_text("#status") in ("approved", "posted")
    public = HfApi(endpoint=bot.hub.url, token=False)
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while datetime.now(UTC) < deadline:
        discussions = [d for d in public.get_repo_discussions(bot.merge) if d.author == "provbot"]
        if discussions:
            break
        bot.workers.wake()
        bot.wait_idle(5)
    assert discussions, "the approved finding was not posted on the local Hub"
    page.goto(f"{bot.url}/console/audit?actor={MOD}&action=review")
    assert "approved finding" in page.inner_text("table.audit")
    export = page.request.get(f"{bot.url}/console/audit.csv?actor={MOD}&action=review")
    assert export.status == 200 and "approved finding" in export.text()
    assert any(
        e["message"].startswith("approved finding")
        for e in page.request.get(f"{bot.url}/console/audit.json?actor={MOD}").json()
    )
    assert not page.errors  # type: ignore[attr-defined]


def test_reject_with_a_reason(page: Any, bot: Any) -> None:
    fid = add_finding(bot, "lab2/to-reject")
    page.goto(f"{bot.url}/console/finding/{fid}")
    page.click("#reject")  # the reason is required: the browser does not submit
    assert bot.ctx.findings.get(fid).status == "pending"
    page.fill("#reject-reason", "declared in the model's paper")
    page.click("#reject")
    page.wait_for_selector(".done")
    f = bot.ctx.findings.get(fid)
    assert f.status == "rejected" and f.reason == "declared in the model's paper" and f.reviewer == MOD


def test_csrf_and_a_stale_decision_are_refused(page: Any, bot: Any) -> None:
    from provbot.bot.service.review.decisions import Review

    fid = add_finding(bot, "lab3/stale")
    page.goto(f"{bot.url}/console/finding/{fid}")
    # The same session's cookie, a form without the token (what a forged cross-site post carries).
    r = page.request.post(f"{bot.url}/console/finding/{fid}/approve", form={"version": "x"})
    assert r.status == 403 and "CSRF" in r.text()
    Review(bot.ctx).hold(fid, MOD, "changed in another tab")  # the finding changes after the page loaded
    page.click("#approve")
    page.wait_for_selector(".error")
    assert "changed since you loaded it" in page.inner_text(".error")
    assert bot.ctx.findings.get(fid).status == "held"


def test_hostile_card_of_a_scanned_upload_and_hostile_repo_name_render_escaped(page: Any, bot: Any) -> None:
    from provbot.bot.service.review.decisions import Review

    scanned = next(f for f in Review(bot.ctx).list("all") if f.repo == HOSTILE_UPLOAD)
    assert scanned.declared["base_model"] == [HOSTILE_CARD]  # the card's text came through the real scan
    injected = add_finding(bot, HOSTILE_REPO, declared=[HOSTILE_CARD])  # the Hub refuses such names: stored directly
    for fid in (scanned.id, injected):
        page.goto(f"{bot.url}/console/finding/{fid}")
        lineage = page.inner_text(".lineage")
        assert "<img src=x" in lineage and "[U+200B]" in lineage  # shown as text, not run
        assert page.locator("img").count() == 0 and page.title() != "pwned"
        assert page.locator("a[href^='javascript:']").count() == 0
    title = page.inner_text("h1")
    assert "[U+202E]" in title and "\u202e" not in title
    page.goto(f"{bot.url}/console/?status=all")
    assert "[U+202E]" in page.inner_text("table.queue")
    assert not page.errors  # type: ignore[attr-defined]


def test_sign_in_with_hugging_face_lands_on_the_queue_signed_in(browser: Any, bot: Any) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    try:
        pg.goto(f"{bot.url}/console/")
        pg.click("text=Sign in with Hugging Face")
        pg.wait_for_url(f"http://localhost:{bot.hub.port}/oauth/authorize?*")  # the Hub's sign-in page
        pg.fill("input[name=token]", HF_TOKEN)
        pg.click("#authorize")
        pg.wait_for_url(f"{bot.url}/console/")
        assert pg.inner_text(".who") == f"hf:{HF_USER} (moderator)"
        assert pg.inner_text("h1") == "Findings"  # the queue (earlier tests may have decided its rows)
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["provbot_console"]["httpOnly"] and cookies["provbot_console"]["sameSite"] == "Strict"
        assert "provbot_oauth" not in cookies  # the flow cookie is gone once used
        assert any(
            e.actor == f"hf:{HF_USER}" and e.data.get("via") == "oauth" for e in bot.ctx.audit.query(kind="review")
        )
    finally:
        context.close()
