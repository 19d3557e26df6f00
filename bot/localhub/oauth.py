"""The Hub's OAuth / OpenID Connect provider, enough to sign in to an app for real in tests.

Apps are registered from Python (:meth:`LocalHub.add_oauth_app`); users are the tokens' owners
(``add_token``) and their organisations come from ``add_org``. Routes:

- ``GET /oauth/authorize``: checks ``client_id`` and ``redirect_uri`` (exactly as registered; a
  mismatch is a 400 page, never a redirect), ``response_type=code`` and a PKCE S256 challenge. A
  request with ``Authorization: Bearer <user token>`` is approved at once (redirect back with
  ``code`` and ``state``); otherwise a small page asks for a user token (the Hub's own login).
- ``POST /oauth/authorize``: that page's form: ``token`` approves as its owner, ``deny`` answers
  ``error=access_denied``.
- ``POST /oauth/token``: ``grant_type=authorization_code``; client credentials by HTTP Basic (or
  ``client_secret`` in the form); the code is single-use and short-lived, and must come with the
  same ``redirect_uri`` and the verifier of its challenge. Answers ``access_token``, ``token_type``,
  ``expires_in``, ``scope``; OAuth errors as ``{"error": ...}`` with 400/401.
- ``GET /oauth/userinfo``: Bearer access token -> ``sub``, ``preferred_username``, ``name``,
  ``profile``, ``picture``, ``orgs`` (each with ``sub``, ``name``, ``preferred_username``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from pydantic import BaseModel, Field, SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from provbot.bot.localhub.models import ServerOptions
from provbot.bot.localhub.webhooks import object_id

MAX_FORM = 16 * 1024
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; form-action *"}


class OAuthApp(BaseModel):
    """An OAuth app registered on the local Hub."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    redirect_uris: list[str] = Field(min_length=1)
    scopes: list[str] = ["openid", "profile"]


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    user: str
    scope: str
    expires: float


@dataclass
class _Access:
    user: str
    scope: str
    expires: float


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _oauth_error(error: str, status: int = 400, description: str = "") -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class OAuthProvider:
    """Answers ``/oauth/*`` for :class:`provbot.bot.localhub.app.LocalHubApp`."""

    def __init__(self, options: ServerOptions, code_seconds: float = 60.0, token_seconds: float = 3600.0) -> None:
        self.options = options
        self.apps: dict[str, OAuthApp] = {}
        self.code_seconds = code_seconds
        self.token_seconds = token_seconds
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, _Access] = {}
        self._lock = threading.Lock()

    def register(self, app: OAuthApp) -> OAuthApp:
        self.apps[app.client_id] = app
        return app

    async def handle(self, request: Request, rest: list[str]) -> Response:
        route = (request.method, "/".join(rest))
        if route in (("GET", "authorize"), ("POST", "authorize")):
            return await self.authorize(request)
        if route == ("POST", "token"):
            return await self.token(request)
        if route == ("GET", "userinfo"):
            return self.userinfo(request)
        return JSONResponse({"error": "Sorry, we can't find the page you are looking for."}, status_code=404)

    # -- authorize -----------------------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        form: dict[str, str] = {}
        if request.method == "POST":
            body = await request.body()
            if len(body) > MAX_FORM:
                return self._page("The form is too large.", 413)
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            q = {k: form[k] for k in form if k not in ("token", "deny")}
        app = self.apps.get(q.get("client_id", ""))
        if app is None:
            return self._page("Unknown client_id: no OAuth app is registered with it.", 400)
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:  # exact match: never send a code anywhere else
            return self._page("The redirect_uri is not one this OAuth app registered.", 400)
        state = q.get("state", "")

        def back(**params: str) -> Response:
            sep = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{sep}{urlencode({**params, 'state': state})}", 302)

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not 43 <= len(q.get("code_challenge", "")) <= 128:
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        scope = q.get("scope", "")
        if not set(scope.split()) <= set(app.scopes):
            return back(error="invalid_scope")
        if "deny" in form:
            return back(error="access_denied")
        token = form.get("token", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not token:
            return self._login_page(q)
        user = self.options.tokens.get(token)
        if user is None:
            return self._login_page(q, "Invalid token.")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(
                app.client_id, redirect_uri, q["code_challenge"], user, scope, time.monotonic() + self.code_seconds
            )
        return back(code=code)

    def _login_page(self, q: dict[str, str], error: str = "") -> Response:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in q.items()
        )
        msg = f'<p class="error">{html.escape(error)}</p>' if error else ""
        body = (
            "<!doctype html><title>Sign in - local Hub</title><h1>Authorize an app</h1>"
            f"<p>{html.escape(q.get('client_id', ''))} asks to sign you in.</p>{msg}"
            f'<form method="post" action="/oauth/authorize">{hidden}'
            '<label>Access token <input name="token" type="password"></label>'
            '<button type="submit" id="authorize">Authorize</button>'
            '<button type="submit" name="deny" value="1" id="deny">Deny</button></form>'
        )
        return HTMLResponse(body, status_code=401 if error else 200, headers=PAGE_HEADERS)

    @staticmethod
    def _page(message: str, status: int) -> Response:
        body = f"<!doctype html><title>OAuth error - local Hub</title><p>{html.escape(message)}</p>"
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    # -- token ---------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM:
            return _oauth_error("invalid_request", 413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError:
                return _oauth_error("invalid_client", 401)
        app = self.apps.get(client_id)
        if app is None or not secrets.compare_digest(secret.encode(), app.client_secret.get_secret_value().encode()):
            return _oauth_error("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        with self._lock:  # taken out on the first try: a code never works twice, right or wrong
            grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant.expires < time.monotonic() or grant.client_id != client_id:
            return _oauth_error("invalid_grant", description="unknown, used or expired code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", description="redirect_uri differs from the authorization's")
        if not secrets.compare_digest(_s256(form.get("code_verifier", "")), grant.challenge):
            return _oauth_error("invalid_grant", description="code_verifier does not match the challenge")
        access = "hf_oauth_" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[access] = _Access(grant.user, grant.scope, time.monotonic() + self.token_seconds)
        answer = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": int(self.token_seconds),
            "scope": grant.scope,
        }
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    # -- userinfo ------------------------------------------------------------------------------
    def userinfo(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        access = self._tokens.get(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        if access is None or access.expires < time.monotonic():
            return _oauth_error("invalid_token", 401)
        user = access.user
        orgs = sorted(org for org, members in self.options.orgs.items() if user in members)
        info: dict[str, Any] = {"sub": object_id(user), "name": user, "preferred_username": user}
        info["profile"] = f"https://huggingface.co/{user}"
        info["picture"] = ""
        info["orgs"] = [{"sub": object_id(o), "name": o, "preferred_username": o, "picture": ""} for o in orgs]
        return JSONResponse(info)
