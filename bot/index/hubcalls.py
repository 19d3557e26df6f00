"""Hub API calls with one-line errors and rate-limit waits.

The Hub answers 429 with ``RateLimit: "api";r=0;t=<seconds>``: we wait that long (capped) and
retry, so a crawl slows down instead of failing. Everything else maps to the project's errors.

>>> hub_call(lambda: 42, what="x")
42
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from provbot.detectors.errors import AccessDeniedError, NotFoundError, RemoteError

T = TypeVar("T")

#: Longest single wait for a rate-limit window, and how many 429s in a row we accept.
MAX_WAIT_S = 300.0
MAX_RATE_LIMITED = 5


def rate_limit_wait(response) -> float:
    """Seconds to wait before retrying after a 429 (from ``RateLimit``/``Retry-After``; default 5 s)."""
    from huggingface_hub.utils import parse_ratelimit_headers

    headers = getattr(response, "headers", None) or {}
    info = parse_ratelimit_headers(headers)
    if info is not None:
        return float(min(max(info.reset_in_seconds, 1), MAX_WAIT_S))
    retry_after = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(min(max(float(retry_after), 1.0), MAX_WAIT_S))
    except (TypeError, ValueError):
        return 5.0


def hub_call(fn: Callable[[], T], *, what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``fn`` (one Hub API call); wait out 429s; map failures to one-line ProvbotErrors."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import httpx

    for _attempt in range(MAX_RATE_LIMITED + 1):
        try:
            return fn()
        except GatedRepoError:
            raise AccessDeniedError(f"{what}: access denied (gated or private repo)") from None
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise NotFoundError(f"{what}: repository or revision not found") from None
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status == 429:
                sleep(rate_limit_wait(exc.response))
                continue
            if status in (401, 403):
                raise AccessDeniedError(f"{what}: access denied (HTTP {status})") from None
            if status == 404:
                raise NotFoundError(f"{what}: not found (HTTP 404)") from None
            raise RemoteError(f"{what}: Hub error (HTTP {status})") from None
        except (httpx.HTTPError, OSError) as exc:
            raise RemoteError(f"{what}: network error ({type(exc).__name__})") from None
    raise RemoteError(f"{what}: still rate limited after {MAX_RATE_LIMITED} waits")
