"""Signing in to the console with a Hugging Face account (bot/service/console/oauth.py), against the
local Hub's real OAuth provider over HTTP, or a scripted server for answers the Hub would not give."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from provbot.bot.localhub import LocalHub
from provbot.bot.service.console.oauth import MAX_ANSWER
from provbot.bot.service.context import BotContext
from provbot.bot.service.redact import RedactingFilter
from provbot.bot.service.web.app import make_app
from provbot.bot.settings import ConsoleOAuthSettings, ConsoleSettings, Settings, get_settings
from provbot.detectors.errors import ConfigError
from tests.bot.helpers import ScriptedScanner, bot_settings
from tests.hub.scripted import Answer, ScriptedServer, closed_port

CLIENT_ID, CLIENT_SECRET = "provbot-console", "oauth-client-s3cret-value"
PUBLIC = "http://127.0.0.1"  # the TestClient's origin
TOKENS = {"mona": "hf_mona_token", "olga": "hf_olga_token", "eve": "hf_eve_token"}


def oauth_settings(provider: str, public: str = PUBLIC, **kw: Any) -> ConsoleOAuthSettings:
    fields: dict[str, Any] = {
        "enabled": True,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "provider_url": provider,
        "public_url": public,
        "users": {"mona": "moderator", "olga": "viewer"},
        "orgs": {"mods": "moderator", "readers": "viewer"},
        "timeout_seconds": 5,
        **kw,
    }
    return ConsoleOAuthSettings.model_validate(fields)


def make_ctx(tmp_path: Any, oauth: ConsoleOAuthSettings) -> BotContext:
    settings = bot_settings("http://127.0.0.1:9", f"sqlite:///{tmp_path / 'bot.db'}")
    settings.console = ConsoleSettings(session_secret="oauth-test-session-key-0123456789", oauth=oauth)  # type: ignore[arg-type]
    settings.bot.webhook_secret = None
    return BotContext.build(settings, scanner=ScriptedScanner(), sleep=lambda s: None)


@pytest.fixture
def hub(localhub: LocalHub) -> LocalHub:
    localhub.add_oauth_app(CLIENT_ID, CLIENT_SECRET, [PUBLIC + "/console/oauth/callback"])
    for user, token in TOKENS.items():
        localhub.add_token(token, user)
    localhub.add_org("mods", ["olga", "mona"])
    localhub.add_org("readers", ["olga"])
    localhub.add_org("strangers", ["eve"])
    return localhub


@pytest.fixture
def ctx(tmp_path: Any, hub: LocalHub) -> BotContext:
    return make_ctx(tmp_path, oauth_settings(hub.url))


def console(ctx: BotContext) -> TestClient:
    return TestClient(make_app(ctx, wake=lambda: None), base_url=PUBLIC, follow_redirects=False)


def start(c: TestClient, next_path: str = "") -> str:
    """Press 'Sign in with Hugging Face': the authorize URL the browser is sent to."""
    r = c.get("/console/oauth/start" + (f"?next={next_path}" if next_path else ""))
    assert r.status_code == 303, r.text
    assert "provbot_oauth=" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
    return r.headers["location"]


def authorize(url: str, user: str | None) -> dict[str, str]:
    """The Hub's side: approve as ``user`` (or deny), return the callback's query."""
    if user is None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        r = httpx.post(url.split("?")[0], data={**q, "deny": "1"})
    else:
        r = httpx.get(url, headers={"Authorization": f"Bearer {TOKENS[user]}"})
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(PUBLIC + "/console/oauth/callback?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def callback(c: TestClient, query: dict[str, str]) -> Any:
    return c.get("/console/oauth/callback", params=query)


def sign_in(c: TestClient, user: str) -> Any:
    return callback(c, authorize(start(c), user))


def audit_text(ctx: BotContext) -> str:
    return " ".join(f"{e.actor} {e.message} {e.data}" for e in ctx.audit.query())


def test_the_login_page_offers_hugging_face_only_when_oauth_is_on(ctx: BotContext, tmp_path: Any) -> None:
    page = console(ctx).get("/console/login?next=/console/finding/3").text
    assert 'href="/console/oauth/start?next=/console/finding/3">Sign in with Hugging Face' in page
    off = make_ctx(tmp_path / "off", ConsoleOAuthSettings())
    c = console(off)
    assert "Sign in with Hugging Face" not in c.get("/console/login").text
    assert c.get("/console/oauth/start").status_code == 404
    assert c.get("/console/oauth/callback?code=x&state=y").status_code == 404


def test_sign_in_opens_a_session_with_the_users_role_and_password_login_still_works(ctx: BotContext) -> None:
    c = console(ctx)
    url = start(c, "/console/audit")
    q = parse_qs(urlsplit(url).query)
    assert q["code_challenge_method"] == ["S256"] and q["scope"] == ["openid profile"]
    assert q["redirect_uri"] == [PUBLIC + "/console/oauth/callback"] and "code_verifier" not in q
    r = callback(c, authorize(url, "mona"))
    assert r.status_code == 200 and "Signed in as hf:mona" in r.text
    assert 'http-equiv="refresh" content="0; url=/console/audit"' in r.text
    cookie = r.headers.get_list("set-cookie")
    assert any("provbot_console=" in h and "HttpOnly" in h and "SameSite=strict" in h for h in cookie)
    page = c.get("/console/")
    assert page.status_code == 200 and "hf:mona (moderator)" in page.text
    login = [e for e in ctx.audit.query(kind="review") if e.message == "console login"]
    assert login[-1].actor == "hf:mona" and login[-1].data["via"] == "oauth" and login[-1].data["role"] == "moderator"


def test_an_org_grants_a_role_and_the_highest_role_wins(ctx: BotContext) -> None:
    c = console(ctx)
    assert sign_in(c, "olga").status_code == 200  # user map: viewer; orgs: mods (moderator), readers (viewer)
    assert "hf:olga (moderator)" in c.get("/console/").text
    # Roles are checked again on every request: the org loses its grant, olga is a viewer now.
    ctx.settings.console.oauth.orgs.pop("mods")
    assert "hf:olga (viewer)" in c.get("/console/").text
    ctx.settings.console.oauth.users.pop("olga")
    ctx.settings.console.oauth.orgs.pop("readers")
    assert c.get("/console/").status_code == 303  # no grant left: back to the login page


def test_a_hub_user_nobody_granted_a_role_is_refused(ctx: BotContext) -> None:
    c = console(ctx)
    r = sign_in(c, "eve")
    assert r.status_code == 403 and "the Hub account eve is not allowed into this console" in r.text
    assert "provbot_console=" not in r.headers.get("set-cookie", "")
    assert c.get("/console/").status_code == 303
    refused = [e for e in ctx.audit.query(kind="error") if e.message == "console OAuth sign-in refused"]
    assert refused[-1].actor == "hf:eve" and "not allowed" in refused[-1].data["why"]


def test_a_state_that_does_not_match_the_flow_cookie_is_refused(ctx: BotContext) -> None:
    c = console(ctx)
    query = authorize(start(c), "mona")
    r = callback(c, {**query, "state": query["state"][:-1] + "x"})
    assert r.status_code == 403 and "state mismatch" in r.text
    # Without the flow cookie (another browser got the link): refused too.
    r = callback(console(ctx), query)
    assert r.status_code == 403 and "not started in this browser" in r.text
    assert "state mismatch" in audit_text(ctx)


def test_failed_sign_ins_are_rate_limited_per_address(ctx: BotContext) -> None:
    c = console(ctx)
    query = authorize(start(c), "mona")
    codes = [callback(c, {**query, "state": f"forged-{i}"}).status_code for i in range(6)]
    assert codes[:5] == [403] * 5 and codes[5] == 429
    assert callback(c, query).status_code == 429  # even the right answer waits out the minute


def test_a_replayed_callback_and_a_replayed_code_are_refused(ctx: BotContext) -> None:
    c = console(ctx)
    url = start(c)
    flow_cookie = c.cookies.get("provbot_oauth")
    query = authorize(url, "mona")
    assert callback(c, query).status_code == 200
    c.cookies.set("provbot_oauth", flow_cookie, path="/console/oauth")  # the same flow again
    r = callback(c, query)
    assert r.status_code == 403 and "already used" in r.text
    # The code again, in a fresh flow: the Hub refuses a code twice.
    other = console(ctx)
    state = parse_qs(urlsplit(start(other)).query)["state"][0]
    r = callback(other, {"code": query["code"], "state": state})
    assert r.status_code == 502 and "(invalid_grant)" in r.text


def test_a_code_from_another_flow_fails_the_pkce_check(ctx: BotContext) -> None:
    victim, attacker = console(ctx), console(ctx)
    victim_state = parse_qs(urlsplit(start(victim)).query)["state"][0]
    stolen = authorize(start(attacker), "mona")  # a code bound to the attacker's verifier
    r = callback(victim, {"code": stolen["code"], "state": victim_state})
    assert r.status_code == 502 and "token endpoint answered 400 (invalid_grant)" in r.text
    assert victim.get("/console/").status_code == 303


def test_the_hubs_refusal_and_failures_show_a_clear_page(ctx: BotContext, hub: LocalHub) -> None:
    c = console(ctx)
    r = callback(c, authorize(start(c), None))  # the user pressed Deny
    assert r.status_code == 403 and "the Hub answered access_denied" in r.text
    hub.inject("/oauth/token", 500)
    r = sign_in(console(ctx), "mona")
    assert r.status_code == 502 and "token endpoint answered 500" in r.text
    hub.inject("/oauth/userinfo", 503)
    r = sign_in(console(ctx), "mona")
    assert r.status_code == 502 and "userinfo endpoint answered 503" in r.text
    hostile = console(ctx)
    state = parse_qs(urlsplit(start(hostile)).query)["state"][0]
    r = callback(hostile, {"error": "<script>alert(1)</script>", "state": state})
    assert "the Hub answered unreadable" in r.text and "<script>alert" not in r.text


def test_a_session_cookie_is_no_flow_cookie_and_the_reverse(ctx: BotContext) -> None:
    c = console(ctx)
    assert sign_in(c, "mona").status_code == 200
    session = c.cookies.get("provbot_console")
    flow = console(ctx)
    state = parse_qs(urlsplit(start(flow)).query)["state"][0]
    flow_cookie = flow.cookies.get("provbot_oauth")
    stranger = console(ctx)
    stranger.cookies.set("provbot_console", flow_cookie, path="/console")
    assert stranger.get("/console/").status_code == 303
    stranger.cookies.set("provbot_oauth", session, path="/console/oauth")
    r = callback(stranger, {"code": "x", "state": state})
    assert r.status_code == 403 and "not started in this browser" in r.text


ANSWERS = {
    "oversized token": (Answer(200, b'{"access_token": "' + b"a" * (MAX_ANSWER + 10) + b'"}'), None, "over 64 KiB"),
    "garbled token": (Answer(200, b"<html>not json</html>"), None, "token answer is not what OAuth expects"),
    "token without type": (Answer(200, b'{"access_token": "tok"}'), None, "token_type: missing"),
    "garbled userinfo": (
        Answer(200, b'{"access_token": "tok-1234", "token_type": "Bearer"}'),
        Answer(200, b'{"sub": "1", "preferred_username": "<img src=x>"}'),
        "userinfo answer is not what OAuth expects (preferred_username",
    ),
    "oversized userinfo": (
        Answer(200, b'{"access_token": "tok-1234", "token_type": "Bearer"}'),
        Answer(200, b"[" * (MAX_ANSWER + 1)),
        "userinfo answer is over 64 KiB",
    ),
}


@pytest.mark.parametrize("case", list(ANSWERS))
def test_bad_answers_from_the_provider_are_clear_errors(case: str, tmp_path: Any) -> None:
    token, userinfo, expected = ANSWERS[case]
    with ScriptedServer() as srv:
        srv.script("/oauth/token", token)
        if userinfo is not None:
            srv.script("/oauth/userinfo", userinfo)
        ctx = make_ctx(tmp_path, oauth_settings(srv.url))
        c = console(ctx)
        state = parse_qs(urlsplit(start(c)).query)["state"][0]
        r = callback(c, {"code": "code-1", "state": state})
        assert r.status_code == 502 and expected in r.text, r.text
        assert c.get("/console/").status_code == 303
        sent = srv.requests[0]
        assert sent.headers["authorization"].startswith("Basic ")  # the secret goes in the header only
        form = parse_qs(sent.body.decode())
        assert form["code"] == ["code-1"] and len(form["code_verifier"][0]) == 43
        assert CLIENT_SECRET not in sent.body.decode()


def test_an_unreachable_hub_is_a_clear_error(tmp_path: Any) -> None:
    ctx = make_ctx(tmp_path, oauth_settings(f"http://127.0.0.1:{closed_port()}"))
    c = console(ctx)
    state = parse_qs(urlsplit(start(c)).query)["state"][0]
    r = callback(c, {"code": "code-1", "state": state})
    assert r.status_code == 502 and "token endpoint (ConnectError)" in r.text


def test_code_tokens_and_secret_never_reach_logs_or_the_audit_log(
    ctx: BotContext, hub: LocalHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RedactingFilter(ctx.redactor))
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        c = console(ctx)
        query = authorize(start(c), "mona")
        seen.append(query["code"])
        assert callback(c, query).status_code == 200
        hub.inject("/oauth/userinfo", 500)
        c2 = console(ctx)
        query = authorize(start(c2), "mona")
        seen.append(query["code"])
        assert callback(c2, query).status_code == 502
        ctx.audit.record("error", message=f"leak attempt {CLIENT_SECRET}")
    issued = list(hub.app.oauth._tokens)
    assert issued and seen
    # The test's own requests (the browser's side: authorize, the callback URL) are not the bot's logs.
    logged = [r.getMessage() for r in caplog.records]
    mine = [m for m in logged if "/oauth/authorize" not in m and "/console/oauth/callback" not in m]
    assert any("/oauth/token" in m for m in mine)  # the bot's calls were logged, without secrets
    text = audit_text(ctx) + "\n".join(mine)
    for secret in [CLIENT_SECRET, *seen, *issued, TOKENS["mona"]]:
        assert secret not in text
    assert "leak attempt [redacted]" in audit_text(ctx)


def test_enabling_oauth_half_way_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVBOT_CONSOLE__OAUTH__ENABLED", "true")
    monkeypatch.setenv("PROVBOT_CONSOLE__OAUTH__CLIENT_ID", "app")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            get_settings()
        assert "PROVBOT_CONSOLE__OAUTH__CLIENT_SECRET is not set" in str(err.value) and "\n" not in str(err.value)
        monkeypatch.setenv("PROVBOT_CONSOLE__OAUTH__CLIENT_SECRET", "s")
        get_settings.cache_clear()
        with pytest.raises(ConfigError, match="PROVBOT_CONSOLE__OAUTH__PUBLIC_URL is not set"):
            get_settings()
        monkeypatch.setenv("PROVBOT_CONSOLE__OAUTH__PUBLIC_URL", "https://bot.example")
        get_settings.cache_clear()
        s = get_settings()
        assert s.console.oauth.provider_url == s.hub_endpoint  # the Hub's endpoint unless set
        assert "'s'" not in repr(s.console.oauth)
    finally:
        get_settings.cache_clear()


def test_sign_in_over_real_http_against_the_local_hub(tmp_path: Any, localhub: LocalHub) -> None:
    from provbot.bot.service.runner import BotService

    port = closed_port()
    public = f"http://127.0.0.1:{port}"
    localhub.add_oauth_app(CLIENT_ID, CLIENT_SECRET, [public + "/console/oauth/callback"])
    localhub.add_token(TOKENS["olga"], "olga")
    localhub.add_org("mods", ["olga"])
    settings: Settings = bot_settings(localhub.url, f"sqlite:///{tmp_path / 'bot.db'}")
    settings.console = ConsoleSettings(
        session_secret="oauth-e2e-session-key-0123456789",  # type: ignore[arg-type]
        oauth=oauth_settings(localhub.url, public, users={}),
    )
    svc = BotService(BotContext.build(settings), port=port, schedule=False).start()
    try:
        with httpx.Client(follow_redirects=False, timeout=10) as browser:
            r = browser.get(f"{svc.url}/console/oauth/start")
            assert r.status_code == 303 and r.headers["location"].startswith(localhub.url + "/oauth/authorize?")
            r = browser.get(r.headers["location"], headers={"Authorization": f"Bearer {TOKENS['olga']}"})
            assert r.status_code == 302
            r = browser.get(r.headers["location"])
            assert r.status_code == 200 and "Signed in as hf:olga" in r.text
            queue = browser.get(f"{svc.url}/console/")
            assert queue.status_code == 200 and "hf:olga (moderator)" in queue.text and "Findings" in queue.text
    finally:
        svc.stop()


def test_a_hub_user_and_a_password_account_of_the_same_name_stay_two_moderators(tmp_path: Any, hub: LocalHub) -> None:
    from pydantic import ValidationError

    from provbot.bot.service.console.auth import hash_password
    from provbot.bot.settings import ConsoleAccount

    admin = ConsoleAccount(password_hash=hash_password("pw-of-the-admin"), role="admin")
    ctx = make_ctx(tmp_path, oauth_settings(hub.url))
    ctx.settings.console.accounts = {"mona": admin}
    c = console(ctx)
    assert sign_in(c, "mona").status_code == 200
    assert "hf:mona (moderator)" in c.get("/console/").text  # the Hub user, not the admin account
    login = [e for e in ctx.audit.query(kind="review") if e.message == "console login"]
    assert [e.actor for e in login] == ["hf:mona"]
    with pytest.raises(ValidationError, match="may not be empty or contain ':'"):
        ConsoleSettings(accounts={"hf:mona": admin})
