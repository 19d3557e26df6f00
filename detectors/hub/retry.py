"""How the Hub client waits: backoff for faults, the Hub's rate-limit windows, and a deadline.

A :class:`RetryPolicy` is plain data (picklable, settable from the bot's settings). The
:class:`RateGate` is shared by all threads of one client: once the Hub says "rate limited for 40 s",
no thread sends anything until then. :class:`HubStats` counts what happened.

>>> policy = RetryPolicy(backoff_s=1.0, jitter=0.0)
>>> [policy.backoff(n) for n in range(3)]
[1.0, 2.0, 4.0]
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on retrying one Hub request.

    Args:
        max_retries: retries after a 5xx, a timeout or a dropped connection (reads only).
        max_rate_limited: 429 answers waited out per request before giving up.
        backoff_s: first backoff; doubles per retry up to ``max_backoff_s``.
        jitter: each backoff is scaled by a random factor in ``[1 - jitter, 1 + jitter]``.
        max_wait_s: the deadline: a rate-limit window ending later than this raises
            :class:`~provbot.detectors.errors.RateLimitedError` at once instead of sleeping.
        sleep, clock: injectable for tests (``clock`` is wall time in seconds, as ``time.time``).
    """

    max_retries: int = 4
    max_rate_limited: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    max_wait_s: float = 300.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt + 1`` after a fault (not a 429)."""
        base = min(self.backoff_s * 2.0**attempt, self.max_backoff_s)
        return base * (1 + self.jitter * (2 * random.random() - 1)) if self.jitter else base  # noqa: S311


class RateGate:
    """The time (``clock`` seconds) before which no request may go out; shared by a client's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def block_until(self, when: float) -> None:
        with self._lock:
            self._until = max(self._until, when)

    def until(self) -> float:
        with self._lock:
            return self._until


@dataclass
class HubStats:
    """Counters of one client (thread-safe): requests sent, retries, 429s waited out, entries skipped.

    File reads also count ``resolves`` (requests to a file's resolve URL), ``cdn_requests`` (sent
    straight to a remembered CDN URL), ``redirects`` (redirect hops followed: each is one more HTTP
    request than ``requests`` says) and ``cdn_expired`` (remembered CDN URLs that had expired).
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    skipped_entries: int = 0
    resolves: int = 0
    cdn_requests: int = 0
    redirects: int = 0
    cdn_expired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "skipped_entries": self.skipped_entries,
                "resolves": self.resolves,
                "cdn_requests": self.cdn_requests,
                "redirects": self.redirects,
                "cdn_expired": self.cdn_expired,
            }
