"""Signing in to the console with a Hugging Face account: the OAuth authorization-code flow with
PKCE (S256) against the Hub's ``/oauth/authorize``, ``/oauth/token`` and ``/oauth/userinfo``.

No Starlette here (app.py owns the routes and cookies): this module makes the flow's secrets and the
authorize URL, exchanges a code for an access token, reads who signed in, and maps them to a role.
Every answer from the Hub is read with a size limit and validated; every failure is an
:class:`OAuthError` whose message is fit for the refusal page and the audit log (never the code,
a token or the client secret).

>>> flow = OAuthFlow(ConsoleOAuthSettings(enabled=True, client_id="app", client_secret="s",
...     provider_url="https://hub.example", public_url="https://bot.example"))
>>> start = flow.start()
>>> url = flow.authorize_url(start)
>>> url.startswith("https://hub.example/oauth/authorize?client_id=app&redirect_uri=https%3A%2F%2Fbot.example")
True
>>> challenge(start.verifier) in url and start.state in url and start.verifier not in url
True
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provbot.bot.settings import ConsoleOAuthSettings, Role
from provbot.detectors.errors import ProvbotError

CALLBACK_PATH = "/console/oauth/callback"
OAUTH_PREFIX = "hf:"  # a Hub user's moderator name: "hf:<user>"
MAX_ANSWER = 64 * 1024  # a token or userinfo answer is a few hundred bytes
FLOW_SECONDS = 600  # time allowed between "Sign in with Hugging Face" and the callback
M = TypeVar("M", bound=BaseModel)
HUB_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"


class OAuthError(ProvbotError):
    """A sign-in refused or failed; the message says why, without any secret."""


class FlowStart(BaseModel):
    """What the flow cookie keeps between /oauth/start and the callback."""

    state: str
    verifier: str
    next: str = ""


class TokenAnswer(BaseModel):
    """The token endpoint's answer (RFC 6749 5.1); only the access token is used."""

    model_config = ConfigDict(extra="ignore")
    access_token: str = Field(min_length=1, max_length=8192)
    token_type: str = Field(pattern=r"(?i)^bearer$")
    expires_in: int | None = None
    scope: str | None = Field(None, max_length=1024)


class OrgInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    preferred_username: str = Field(pattern=HUB_NAME)


class UserInfo(BaseModel):
    """The userinfo answer: OpenID Connect fields plus the Hub's ``orgs``."""

    model_config = ConfigDict(extra="ignore")
    sub: str = Field(min_length=1, max_length=128)
    preferred_username: str = Field(pattern=HUB_NAME)
    name: str | None = Field(None, max_length=256)
    orgs: list[OrgInfo] = Field([], max_length=2000)


def challenge(verifier: str) -> str:
    """The PKCE S256 code challenge of ``verifier`` (RFC 7636 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OAuthFlow:
    """One console's OAuth client of the Hub (settings ``console.oauth``)."""

    def __init__(self, cfg: ConsoleOAuthSettings, hub_endpoint: str = "https://huggingface.co") -> None:
        self.cfg = cfg
        self.base = (cfg.provider_url or hub_endpoint).rstrip("/")
        self.redirect_uri = cfg.public_url.rstrip("/") + CALLBACK_PATH

    def start(self, next_path: str = "") -> FlowStart:
        # 32 random bytes -> 43 URL-safe characters: the verifier length RFC 7636 asks for.
        return FlowStart(state=secrets.token_urlsafe(24), verifier=secrets.token_urlsafe(32), next=next_path)

    def authorize_url(self, flow: FlowStart) -> str:
        query = {
            "client_id": self.cfg.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": " ".join(self.cfg.scopes),
            "state": flow.state,
            "code_challenge": challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.base}/oauth/authorize?{urlencode(query)}"

    async def sign_in(self, code: str, verifier: str) -> UserInfo:
        """Exchange ``code`` for an access token, then read who it belongs to."""
        if not code or len(code) > 1024:
            raise OAuthError("the Hub's redirect carried no usable authorization code")
        secret = self.cfg.client_secret.get_secret_value() if self.cfg.client_secret else ""
        async with httpx.AsyncClient(timeout=self.cfg.timeout_seconds, follow_redirects=False) as http:
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.cfg.client_id,
                "code_verifier": verifier,
            }
            token = await self._answer(
                http, "token", TokenAnswer, "POST", "/oauth/token", data=form, auth=(self.cfg.client_id, secret)
            )
            headers = {"Authorization": f"Bearer {token.access_token}"}
            return await self._answer(http, "userinfo", UserInfo, "GET", "/oauth/userinfo", headers=headers)

    async def _answer(self, http: httpx.AsyncClient, what: str, model: type[M], method: str, path: str, **kw: Any) -> M:
        """One call to the Hub, its body read up to MAX_ANSWER, validated as ``model``."""
        try:
            async with http.stream(method, self.base + path, **kw) as r:
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise OAuthError(f"the Hub's {what} answer is over {MAX_ANSWER // 1024} KiB; refused")
                status = r.status_code
        except httpx.HTTPError as exc:  # the exception's text may hold the URL: only its kind is told
            raise OAuthError(f"could not reach the Hub's {what} endpoint ({type(exc).__name__})") from None
        if status != 200:
            raise OAuthError(f"the Hub's {what} endpoint answered {status}{_oauth_error(bytes(body))}")
        try:
            return model.model_validate_json(bytes(body))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise OAuthError(f"the Hub's {what} answer is not what OAuth expects ({where}: {err['type']})") from None


def _oauth_error(body: bytes) -> str:
    """The standard ``error`` code of an OAuth error answer, as a short suffix (never its free text)."""
    try:
        code = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    ok = isinstance(code, str) and code.isascii() and code.replace("_", "").isalnum() and len(code) <= 40
    return f" ({code})" if ok else ""


def role_of(cfg: ConsoleOAuthSettings, user: UserInfo) -> tuple[Role | None, tuple[str, ...]]:
    """The user's role (None: not allowed in) and the organisations that the role map names
    (kept in the session so the role is re-checked on every request against the current map)."""
    orgs = tuple(sorted({o.preferred_username for o in user.orgs if o.preferred_username in cfg.orgs}))
    return cfg.role_for(user.preferred_username, orgs), orgs
