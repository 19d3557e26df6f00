"""Console accounts, sessions, CSRF tokens and the login rate limit (stdlib only).

Passwords are stored as scrypt hashes; sessions are HMAC-signed cookies holding the login name, the
role, an expiry and a random session id; a form's CSRF token is an HMAC of that session id.

>>> h = hash_password("correct horse")
>>> verify_password("correct horse", h), verify_password("wrong", h)
(True, False)
>>> s = Signer(b"k" * 32)
>>> token = s.issue("alice", "moderator", hours=1)
>>> s.read(token).name, s.read(token + "x")
('alice', None)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from provbot.bot.settings import ROLES

_N, _R, _P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` with a random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare; malformed hashes never match)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
        return hmac.compare_digest(got, _unb64(digest))
    except (ValueError, TypeError):
        return False


# Spent on unknown names too, so that timing does not tell which login names exist.
_DUMMY = hash_password(secrets.token_hex(8))


@dataclass(frozen=True)
class Session:
    name: str
    role: str
    sid: str
    expires: float
    via: str = "password"  # or "oauth": signed in with a Hugging Face account
    orgs: tuple[str, ...] = ()  # the Hub organisations (those the role map names) at sign-in

    def can(self, role: str) -> bool:
        """True when this session's role is ``role`` or above (viewer < moderator < admin)."""
        return ROLES.index(self.role) >= ROLES.index(role)


class Signer:
    """Signs and reads session cookies and other short-lived cookies, and makes and checks CSRF
    tokens, with one key. Each kind of cookie is signed for its own purpose, so one never passes
    as another (an OAuth flow cookie is no session).

    >>> s = Signer(b"k" * 32)
    >>> s.unseal("oauth", s.seal("session", {"x": 1}, seconds=60)) is None
    True
    """

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, purpose: str, data: bytes) -> str:
        return _b64(hmac.new(self.key, purpose.encode() + b"\0" + data, hashlib.sha256).digest())

    def seal(self, purpose: str, data: dict[str, object], *, seconds: float) -> str:
        """``data`` (JSON) with an expiry, signed for ``purpose``."""
        body = json.dumps({**data, "e": time.time() + seconds}).encode()
        return f"{_b64(body)}.{self._mac(purpose, body)}"

    def unseal(self, purpose: str, cookie: str | None) -> dict[str, object] | None:
        """The data of a cookie sealed for ``purpose`` and not expired; None otherwise."""
        if not cookie or "." not in cookie or len(cookie) > 8192:
            return None
        body_b64, mac = cookie.rsplit(".", 1)
        try:
            body = _unb64(body_b64)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            data = json.loads(body)
            ok = isinstance(data, dict) and float(data["e"]) > time.time()
        except (ValueError, KeyError, TypeError):
            return None
        return data if ok else None

    def issue(self, name: str, role: str, *, hours: float, via: str = "password", orgs: tuple[str, ...] = ()) -> str:
        data: dict[str, object] = {"n": name, "r": role, "s": secrets.token_hex(16), "v": via, "o": list(orgs)}
        return self.seal("session", data, seconds=hours * 3600)

    def read(self, cookie: str | None) -> Session | None:
        """The session in a valid, unexpired cookie; None otherwise."""
        d = self.unseal("session", cookie)
        if d is None:
            return None
        try:
            orgs = d.get("o") or []
            session = Session(
                name=str(d["n"]),
                role=str(d["r"]),
                sid=str(d["s"]),
                expires=float(d["e"]),  # type: ignore[arg-type]
                via=str(d.get("v", "password")),
                orgs=tuple(str(o) for o in orgs) if isinstance(orgs, list) else (),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.role in ROLES and session.via in ("password", "oauth") else None

    def csrf(self, session: Session) -> str:
        return self._mac("csrf", session.sid.encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token or "", self.csrf(session))


class RateLimit:
    """At most ``per_minute`` failures per key in any 60 s window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                q = self._fails.get(key)
                while q and now - q[0] > 60:
                    q.popleft()
                if q and len(q) >= self.per_minute:
                    return True
        return False

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._fails) > 10_000:  # a spray of names or addresses: forget the windows that ended
                self._fails = {k: q for k, q in self._fails.items() if q and now - q[-1] <= 60}
            for key in keys:
                self._fails.setdefault(key, deque()).append(time.monotonic())


class OnceSet:
    """Values that may be taken once within ``seconds`` (a replayed OAuth callback is refused).

    >>> s = OnceSet(60)
    >>> s.take("a"), s.take("a"), s.take("b")
    (True, False, True)
    """

    def __init__(self, seconds: float, limit: int = 100_000) -> None:
        self.seconds, self.limit = seconds, limit
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, value: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) >= self.limit:  # forget what is past its window (it can no longer be used)
                self._seen = {k: t for k, t in self._seen.items() if now - t <= self.seconds}
            if value in self._seen:
                return False
            self._seen[value] = now
            return True
