"""The one error map: every Hub answer or network fault becomes a retry or one clear provbot error.

===============================================  ===============================================
what happened                                     what the caller sees
===============================================  ===============================================
404                                               :class:`NotFoundError`
401, 403 (private, gated, bad token)              :class:`AccessDeniedError`
429, reset within the policy's ``max_wait_s``     waited out, then the request is sent again
429, reset later than that                        :class:`RateLimitedError` at once
5xx, 408, timeout, dropped connection (reads)     retried with backoff, then :class:`RemoteError`
connection refused, unknown host, offline mode    :class:`UnreachableError`, never retried
not JSON, too deep, wrong shape, redirect loop    :class:`BadAnswerError`
===============================================  ===============================================

>>> describe_status(404, Call("model info", "org/x"), "http://hub").__class__.__name__
'NotFoundError'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from provbot.detectors.errors import (
    AccessDeniedError,
    BadAnswerError,
    NotFoundError,
    ProvbotError,
    RateLimitedError,
    RemoteError,
    UnreachableError,
)

#: Statuses worth asking again: the server was busy, restarting or overloaded.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Call:
    """What a request was for, as errors name it: ``Call("model info", "org/x")`` -> "model info of org/x"."""

    what: str
    repo: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        if not self.repo:
            return self.what
        return f"{self.what} of {self.repo}" + (f"@{self.revision[:12]}" if self.revision else "")


def is_retry_status(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


def describe_status(status: int, call: Call, endpoint: str, headers: Mapping[str, str] | None = None) -> ProvbotError:
    """The error for a final, non-retryable answer; the Hub's ``X-Error-Code`` tells repo, revision and file apart."""
    headers = headers or {}
    code = headers.get("x-error-code", "")
    hint = _hint(headers.get("x-error-message", ""))
    where = f"{call} on {endpoint}"
    if code == "GatedRepo":
        return AccessDeniedError(f"{where}: access to the gated repo denied (accept its terms, or check the token)")
    if status in (401, 403):
        # Without a token the Hub answers 401 for private and for missing repos alike.
        maybe = ", or no such repo" if code == "RepoNotFound" else ""
        return AccessDeniedError(
            f"{where}: access denied (HTTP {status}): private or gated, or the token is wrong{maybe}{hint}"
        )
    if status == 404:
        if code == "RepoNotFound" and call.repo:
            return NotFoundError(f"{call}: repo {call.repo} not found on {endpoint}")
        if code == "RevisionNotFound" and call.repo:
            return NotFoundError(f"{call}: revision {call.revision} not found in repo {call.repo} on {endpoint}")
        return NotFoundError(f"{where}: not found (HTTP 404){hint}")
    return RemoteError(f"{where}: the Hub answered HTTP {status}{hint}")


def _hint(hint: str) -> str:
    # The Hub's own message (X-Error-Message) helps ("Repository not found", "Invalid rev id"), but
    # it is the server's text: one short line, never a token (it was never sent in a body).
    line = " ".join(hint.split())[:200]
    return f" ({line})" if line else ""


def rate_limit_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until the Hub's rate-limit window resets (``RateLimit``, else ``Retry-After``); None if unsaid.

    >>> rate_limit_wait({"RateLimit": '"api";r=0;t=55'}), rate_limit_wait({"Retry-After": "7"}), rate_limit_wait({})
    (55.0, 7.0, None)
    """
    from huggingface_hub.utils import parse_ratelimit_headers

    try:
        info = parse_ratelimit_headers(headers)
    except (ValueError, TypeError):
        info = None
    if info is not None:
        return float(max(info.reset_in_seconds, 0))
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def rate_limited(call: Call, endpoint: str, wait_s: float, now: float, why: str = "") -> RateLimitedError:
    """The error for a rate-limit window that ends later than the deadline allows waiting."""
    reset_at = datetime.fromtimestamp(now + wait_s, UTC)
    return RateLimitedError(
        f"{call} on {endpoint}: rate limited until {reset_at:%H:%M} UTC ({wait_s:.0f} s from now){why}; "
        "try again after that",
        retry_after=wait_s,
        reset_at=reset_at,
    )


def transport_fault(exc: BaseException, call: Call, endpoint: str) -> ProvbotError | None:
    """The error for a network fault that retrying cannot fix, or None when a retry may help."""
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import httpx

    if isinstance(exc, OfflineModeIsEnabled):
        return UnreachableError(f"{call}: cannot reach {endpoint}: offline mode is on (HF_HUB_OFFLINE)")
    if isinstance(exc, httpx.TooManyRedirects):
        return BadAnswerError(f"{call} on {endpoint}: bad answer: too many redirects (a redirect loop?)")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return UnreachableError(f"{call}: cannot reach {endpoint}: {_first_line(exc)}")
    if isinstance(exc, httpx.ConnectError):
        # Refused, unknown host, no route: nothing listens there, and asking again will not change that.
        return UnreachableError(f"{call}: cannot reach {endpoint} ({_first_line(exc)}); is the Hub endpoint right?")
    return None


def gave_up(call: Call, endpoint: str, tries: int, last: str) -> RemoteError:
    return RemoteError(f"{call} on {endpoint} failed after {tries} tries ({last})")


def write_failed(call: Call, endpoint: str, last: str) -> RemoteError:
    # A POST the server may have carried out is not sent again: a second comment would be a duplicate.
    return RemoteError(f"{call} on {endpoint} failed ({last}); it may have been applied, check before retrying")


def bad_answer(call: Call, endpoint: str, why: str) -> BadAnswerError:
    return BadAnswerError(f"{call} on {endpoint}: bad answer from the Hub: {why}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
