"""The console's Starlette app, mounted under ``/console`` by the bot's HTTP app.

Every page needs a signed session cookie; every POST needs the session's CSRF token; decisions go
through :class:`provbot.bot.service.review.decisions.Review` (the CLI's path). Responses carry a
Content-Security-Policy without inline scripts or outside origins. Requests from other hosts than
loopback are refused unless ``console.allow_remote``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from provbot.bot.paths import TEMPLATES_DIR
from provbot.bot.service.console import views
from provbot.bot.service.console.auth import _DUMMY, OnceSet, RateLimit, Session, Signer, verify_password
from provbot.bot.service.console.oauth import FLOW_SECONDS, OAUTH_PREFIX, FlowStart, OAuthError, OAuthFlow, role_of
from provbot.bot.service.context import BotContext
from provbot.bot.service.publish.render import visible
from provbot.bot.service.review.decisions import Review, ReviewError
from provbot.bot.service.web.webhook import WebhookRejected, read_body

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE, LOGIN_COOKIE, OAUTH_COOKIE = "provbot_console", "provbot_login", "provbot_oauth"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FORM = 64 * 1024
PAGE_SIZE = 50  # findings per queue page
LOOPBACK = ("127.0.0.1", "::1", "localhost", "testclient")
DONE = {
    "approved": "Approved: the post is queued.",
    "rejected": "Rejected; the reason is in the audit log.",
    "held": "Held: nothing will be posted until someone approves it.",
    "rescan": "Rescan queued.",
    "claimed": "You now hold this finding.",
    "retried": "Job queued again.",
}


def _hub_text(value: Any) -> str:
    """Text from the Hub for HTML: invisible and direction-changing characters written out
    (autoescape does the rest)."""
    return visible("" if value is None else str(value))


def make_console(ctx: BotContext, *, wake: Callable[[], None] = lambda: None, workers: Any | None = None) -> Starlette:
    """The console app; ``wake`` tells the workers that a job was queued (an approval's post, a rescan)."""
    cfg = ctx.settings.console
    key = cfg.session_secret.get_secret_value().encode() if cfg.session_secret else secrets.token_bytes(32)
    signer = Signer(key)
    limiter = RateLimit(cfg.login_attempts_per_minute)
    flow = OAuthFlow(cfg.oauth, ctx.settings.hub_endpoint) if cfg.oauth.enabled else None
    used_states = OnceSet(FLOW_SECONDS)  # a flow cookie opens one session at most
    review = Review(ctx)
    env = Environment(
        loader=FileSystemLoader(str(Path(TEMPLATES_DIR) / "console")),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["hub"] = _hub_text

    def page(request: Request, name: str, session: Session | None, status: int = 200, **data: Any) -> Response:
        html = env.get_template(name).render(
            session=session,
            csrf=signer.csrf(session) if session else "",
            root=request.scope.get("root_path", ""),
            done=DONE.get(request.query_params.get("done", "")),
            **data,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    async def form(request: Request) -> dict[str, str]:
        try:
            body = await read_body(request, MAX_FORM)
        except WebhookRejected:  # over the limit: read no further, and no field is there
            return {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}

    def remote_refused(request: Request) -> Response | None:
        if not cfg.allow_remote and (request.client is None or request.client.host not in LOOPBACK):
            return Response("the console answers loopback only", status_code=403, headers=HEADERS)
        return None

    def current_role(session: Session) -> str | None:
        """The role the settings grant this session now (None: no longer allowed in)."""
        if session.via == "oauth":
            hub_name = session.name.removeprefix(OAUTH_PREFIX)
            return cfg.oauth.role_for(hub_name, session.orgs) if cfg.oauth.enabled else None
        account = cfg.accounts.get(session.name)
        return account.role if account is not None else None

    def open_session(
        request: Request, name: str, role: str, next_path: str, via: str = "password", orgs: tuple[str, ...] = ()
    ) -> Response:
        """Record the login and answer with the session cookie, on to ``next_path``."""
        client = request.client.host if request.client else "?"
        data = {"client": client, "role": role, "via": via}
        ctx.audit.record("review", actor=name, message="console login", data=data)
        target = request.scope.get("root_path", "") + (next_path or "/")
        if via == "oauth":
            # The callback is reached from the Hub's site: a browser withholds SameSite=Strict cookies
            # from a redirect that continues that navigation, so the next page is opened from here.
            resp: Response = page(request, "signed_in.html.j2", None, target=target, user=name)
        else:
            resp = RedirectResponse(target, 303, headers=HEADERS)
        resp.set_cookie(
            COOKIE,
            signer.issue(name, role, hours=cfg.session_hours, via=via, orgs=orgs),
            max_age=int(cfg.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=cfg.secure_cookies,
            path="/console",
        )
        return resp

    Handler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]

    def guarded(role: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Loopback (unless allowed), a valid session of ``role`` or above, and on POST a valid CSRF token."""

        async def endpoint(request: Request) -> Response:
            if (refused := remote_refused(request)) is not None:
                return refused
            session = signer.read(request.cookies.get(COOKIE))
            root = request.scope.get("root_path", "")
            role_now = current_role(session) if session is not None else None
            if session is not None and role_now is not None:  # the configured role counts, not the cookie's
                session = replace(session, role=role_now)
            if session is None or role_now is None:
                if request.method == "GET":
                    return RedirectResponse(
                        f"{root}/login?{urlencode({'next': request.url.path})}", 303, headers=HEADERS
                    )
                return Response("not logged in", status_code=401, headers=HEADERS)
            fields: dict[str, str] = {}
            if request.method == "POST":
                fields = await form(request)
                if not signer.csrf_ok(session, fields.get("csrf")):
                    return page(
                        request,
                        "error.html.j2",
                        session,
                        403,
                        message="The form's CSRF token is missing or wrong; reload the page and try again.",
                    )
            if not session.can(role):
                return page(
                    request,
                    "error.html.j2",
                    session,
                    403,
                    message=f"Your role ({session.role}) may not do this; it needs {role}.",
                )
            return await handler(request, session, fields)

        return endpoint

    # -- login ---------------------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        if (refused := remote_refused(request)) is not None:
            return refused
        nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_hex(16)
        resp = page(
            request,
            "login.html.j2",
            None,
            token=signer._mac("login", nonce.encode()),
            next=_next(request.query_params.get("next")),
            oauth=cfg.oauth.enabled,
        )
        resp.set_cookie(
            LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=cfg.secure_cookies, path="/console"
        )
        return resp

    async def login(request: Request) -> Response:
        if (refused := remote_refused(request)) is not None:
            return refused
        fields = await form(request)
        nonce = request.cookies.get(LOGIN_COOKIE) or ""
        token = fields.get("csrf", "")
        if not nonce or not secrets.compare_digest(token, signer._mac("login", nonce.encode())):
            return page(
                request, "login.html.j2", None, 403, token="", next="", error="The login form expired; reload the page."
            )
        name, password = fields.get("name", "").strip(), fields.get("password", "")
        client = request.client.host if request.client else "?"
        keys = (f"ip:{client}", f"name:{name.lower()}")
        if limiter.blocked(*keys):
            ctx.audit.record(
                "error", actor=name[:128] or None, message="console login rate-limited", data={"client": client}
            )
            return page(
                request,
                "login.html.j2",
                None,
                429,
                token=token,
                next="",
                error="Too many failed logins; wait a minute.",
            )
        account = cfg.accounts.get(name)
        ok = await run_in_threadpool(verify_password, password, account.password_hash if account else _DUMMY)
        if account is None or not ok:
            limiter.fail(*keys)
            ctx.audit.record("error", actor=name[:128] or None, message="console login failed", data={"client": client})
            return page(
                request,
                "login.html.j2",
                None,
                401,
                token=token,
                next=_next(fields.get("next")),
                error="Wrong name or password.",
            )
        return open_session(request, name, account.role, _next(fields.get("next")))

    # -- sign in with Hugging Face (OAuth) -----------------------------------------------------
    async def oauth_start(request: Request) -> Response:
        if (refused := remote_refused(request)) is not None:
            return refused
        if flow is None:
            return page(request, "error.html.j2", None, 404, message="Signing in with Hugging Face is not set up.")
        start = flow.start(_next(request.query_params.get("next")))
        resp = RedirectResponse(flow.authorize_url(start), 303, headers=HEADERS)
        # Lax, not Strict: the callback is a navigation coming back from the Hub's site.
        resp.set_cookie(
            OAUTH_COOKIE,
            signer.seal("oauth", start.model_dump(), seconds=FLOW_SECONDS),
            max_age=FLOW_SECONDS,
            httponly=True,
            samesite="lax",
            secure=cfg.secure_cookies,
            path="/console/oauth",
        )
        return resp

    async def oauth_callback(request: Request) -> Response:
        if (refused := remote_refused(request)) is not None:
            return refused
        if flow is None:
            return page(request, "error.html.j2", None, 404, message="Signing in with Hugging Face is not set up.")
        client = request.client.host if request.client else "?"
        who: str | None = None

        def refuse(why: str, status: int = 403) -> Response:
            if status != 429:  # a refusal for the limit itself does not extend it
                limiter.fail(f"ip:{client}")
            ctx.audit.record(
                "error", actor=who, message="console OAuth sign-in refused", data={"client": client, "why": why}
            )
            resp = page(request, "error.html.j2", None, status, message=f"Signing in with Hugging Face failed: {why}.")
            resp.delete_cookie(OAUTH_COOKIE, path="/console/oauth")
            return resp

        if limiter.blocked(f"ip:{client}"):
            return refuse("too many failed sign-ins from this address; wait a minute", 429)
        q = request.query_params
        sealed = signer.unseal("oauth", request.cookies.get(OAUTH_COOKIE))
        try:
            start = FlowStart.model_validate(sealed) if sealed is not None else None
        except ValidationError:
            start = None
        if start is None:
            return refuse("the sign-in expired or was not started in this browser; start again")
        if not secrets.compare_digest(q.get("state", "").encode(), start.state.encode()):
            return refuse("the answer from the Hub does not belong to this sign-in (state mismatch)")
        if not used_states.take(start.state):
            return refuse("this sign-in was already used; start again")
        if "error" in q:
            code = q["error"] if q["error"].isascii() and q["error"].replace("_", "").isalnum() else "unreadable"
            return refuse(f"the Hub answered {code[:40]}")
        try:
            user = await flow.sign_in(q.get("code", ""), start.verifier)
        except OAuthError as exc:
            return refuse(str(exc), 502)
        # "hf:" keeps a Hub user apart from a password account of the same name (those cannot hold ":").
        who = OAUTH_PREFIX + user.preferred_username
        role, orgs = role_of(cfg.oauth, user)
        if role is None:
            return refuse(f"the Hub account {user.preferred_username} is not allowed into this console")
        resp = open_session(request, who, role, start.next, via="oauth", orgs=orgs)
        resp.delete_cookie(OAUTH_COOKIE, path="/console/oauth")
        return resp

    async def logout(request: Request, session: Session, fields: dict[str, str]) -> Response:
        resp = RedirectResponse(request.scope.get("root_path", "") + "/login", 303, headers=HEADERS)
        resp.delete_cookie(COOKIE, path="/console")
        return resp

    # -- pages ---------------------------------------------------------------------------------
    async def queue(request: Request, session: Session, fields: dict[str, str]) -> Response:
        query = views.finding_query(request.query_params)
        try:
            page_no = max(1, min(int(request.query_params.get("page", "1")), 1_000_000))
        except ValueError:
            page_no = 1

        def load() -> dict[str, Any]:
            # Filtering, ordering and paging happen in SQL: a page costs the same with a million findings.
            rows, total = ctx.findings.search(query, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE)
            stats = views.queue_stats(ctx.findings.count_open(), ctx.findings.decisions(views.DECIDED))
            return {"rows": rows, "total": total, "stats": stats, "kinds": ctx.findings.relations()}

        data = await run_in_threadpool(load)
        pages = max(1, -(-data["total"] // PAGE_SIZE))
        filters = {**query.model_dump(mode="json"), "since": query.since.isoformat() if query.since else ""}
        return page(request, "queue.html.j2", session, filters=filters, page=page_no, pages=pages, **data)

    async def finding(
        request: Request, session: Session, fields: dict[str, str], error: str | None = None, status: int = 200
    ) -> Response:
        fid = int(request.path_params["fid"])
        try:
            f = await run_in_threadpool(review.get, fid)
            if session.can("moderator") and f.status in views.OPEN and request.method == "GET":
                f = await run_in_threadpool(review.claim, fid, session.name)
            post = await run_in_threadpool(review.preview, fid)
        except ReviewError as exc:
            return page(request, "error.html.j2", session, 404, message=str(exc))
        data = views.finding_page(f, post, ctx.settings.bot.username)
        history = await run_in_threadpool(
            lambda: [e for e in ctx.audit.query(repo=f.repo, limit=200) if e.data.get("finding_id") == fid]
        )
        return page(request, "finding.html.j2", session, status, error=error, history=history, **data)

    async def act(request: Request, session: Session, fields: dict[str, str]) -> Response:
        fid, action = int(request.path_params["fid"]), request.path_params["action"]
        version = fields.get("version") or None
        reason = fields.get("reason", "").strip()
        try:
            if action == "approve":
                await run_in_threadpool(lambda: review.approve(fid, session.name, version=version))
                done = "approved"
            elif action == "reject":
                await run_in_threadpool(lambda: review.reject(fid, session.name, reason, version=version))
                done = "rejected"
            elif action == "hold":
                await run_in_threadpool(lambda: review.hold(fid, session.name, reason, version=version))
                done = "held"
            elif action == "rescan":
                parents = fields.get("parents", "").replace(",", " ").split()
                await run_in_threadpool(review.rescan, fid, session.name, parents)
                done = "rescan"
            elif action == "takeover" and session.can("admin"):
                await run_in_threadpool(lambda: review.claim(fid, session.name, force=True))
                done = "claimed"
            else:
                return page(request, "error.html.j2", session, 404, message="No such action.")
        except ReviewError as exc:
            return await finding(request, session, fields, error=str(exc), status=409)
        wake()
        return RedirectResponse(f"{request.scope.get('root_path', '')}/finding/{fid}?done={done}", 303, headers=HEADERS)

    def _audit_filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        return {
            "repo": q.get("repo", "").strip()[:256] or None,
            "actor": q.get("actor", "").strip()[:128] or None,
            "kind": q.get("action", "").strip()[:32] or None,
            "since": views.parse_day(q.get("since", "")),
            "until": views.parse_day(q.get("until", ""), end=True),
            "limit": 10_000 if request.url.path.endswith((".csv", ".json")) else 500,
        }

    async def audit(request: Request, session: Session, fields: dict[str, str]) -> Response:
        rows = await run_in_threadpool(lambda: ctx.audit.query(**_audit_filters(request)))
        return page(
            request,
            "audit.html.j2",
            session,
            rows=list(reversed(rows)),
            q=request.query_params,
            query=urlencode(dict(request.query_params)),
        )

    async def audit_export(request: Request, session: Session, fields: dict[str, str]) -> Response:
        rows = await run_in_threadpool(lambda: ctx.audit.query(**_audit_filters(request)))
        if request.url.path.endswith(".csv"):
            body, media = views.audit_csv(rows), "text/csv; charset=utf-8"
        else:
            body, media = views.audit_json(rows), "application/json"
        name = "provbot-audit" + (".csv" if media.startswith("text/csv") else ".json")
        return Response(
            body, media_type=media, headers={**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
        )

    async def jobs(request: Request, session: Session, fields: dict[str, str]) -> Response:
        def load() -> dict[str, Any]:
            lists = {state: ctx.queue.list(state=state, limit=300) for state in ("queued", "running", "failed")}
            local = None
            if workers is not None:
                local = {"owner": workers.owner, "concurrency": workers.concurrency, "busy": workers.busy}
            return {
                "lists": lists,
                "counts": ctx.queue.counts(),
                "workers": views.worker_rows(lists["running"]),
                "local": local,
            }

        return page(request, "jobs.html.j2", session, **(await run_in_threadpool(load)))

    async def retry(request: Request, session: Session, fields: dict[str, str]) -> Response:
        jid = int(request.path_params["jid"])
        ok = await run_in_threadpool(ctx.queue.retry, jid)
        if not ok:
            return page(
                request, "error.html.j2", session, 409, message=f"Job {jid} is not failed; nothing was retried."
            )
        await run_in_threadpool(
            lambda: ctx.audit.record(
                "review", actor=session.name, message=f"retried job {jid}", data={"job_id": jid, "decision": "retry"}
            )
        )
        wake()
        return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs?done=retried", 303, headers=HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            return Response(status_code=404)
        return FileResponse(path, headers={**HEADERS, "Cache-Control": "max-age=300"})

    return Starlette(
        routes=[
            Route("/static/{name}", static, methods=["GET"]),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/oauth/start", oauth_start, methods=["GET"]),
            Route("/oauth/callback", oauth_callback, methods=["GET"]),
            Route("/logout", guarded("viewer", logout), methods=["POST"]),
            Route("/", guarded("viewer", queue), methods=["GET"]),
            Route("/finding/{fid:int}", guarded("viewer", finding), methods=["GET"]),
            Route("/finding/{fid:int}/{action}", guarded("moderator", act), methods=["POST"]),
            Route("/audit", guarded("viewer", audit), methods=["GET"]),
            Route("/audit.csv", guarded("viewer", audit_export), methods=["GET"]),
            Route("/audit.json", guarded("viewer", audit_export), methods=["GET"]),
            Route("/jobs", guarded("viewer", jobs), methods=["GET"]),
            Route("/jobs/{jid:int}/retry", guarded("admin", retry), methods=["POST"]),
        ]
    )


def _next(value: str | None) -> str:
    """A same-console path to go to after login (anything else: the queue)."""
    if not value or not value.startswith("/console/") or "//" in value or "\\" in value:
        return ""
    return value[len("/console") :]
