"""Rate-limit windows per caller and bucket, as the Hub counts them per token, with a time scale.

Buckets: ``api`` (``/api/...``) and ``resolvers`` (``/{repo}/resolve/...``); the CDN is not
counted. Each caller (a token's user; anonymous callers share one window) has its own fixed
windows. Quotas are either given per bucket for everyone, or the Hub's plans (:data:`PLANS`) by
user. Every counted answer carries ``RateLimit``/``RateLimit-Policy``; past the quota it is a 429
with ``Retry-After``.

``time_scale`` makes Hub time run faster than the clock: at 60 a 300-second window passes in
5 real seconds. Every time in the headers (``t``, ``w``, ``Retry-After``) is in real seconds,
rounded up, so a client that waits what they say never runs into the next 429.

>>> q = QuotaWindows({"api": 2}, window_s=300, clock=lambda: 0.0)
>>> [q.take("api")[0] for _ in range(3)]
[True, True, False]
>>> q.take("api")[1]["RateLimit"]
'"api";r=0;t=300'
>>> fast = QuotaWindows({}, window_s=300, clock=lambda: 0.0, time_scale=60)
>>> fast.take("resolvers", quotas=PLANS["pro"])[1]["RateLimit-Policy"]
'"fixed window";"resolvers";q=12000;w=5'
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

# The Hub's per-token quotas per 5-minute window.
PLANS: dict[str, dict[str, int]] = {
    "free": {"api": 1000, "resolvers": 5000},
    "pro": {"api": 2500, "resolvers": 12000},
}


def bucket_of(path: str) -> str | None:
    """The quota bucket a request path counts against (None: not counted)."""
    if path.startswith("/api/"):
        return "api"
    parts = path.split("/")
    if len(parts) > 4 and parts[3] == "resolve":
        return "resolvers"
    return None


class QuotaWindows:
    """Requests taken per (caller, bucket) in the current fixed window (windows start at multiples
    of ``window_s`` of Hub time, which runs ``time_scale`` times as fast as ``clock``)."""

    def __init__(
        self,
        quotas: dict[str, int],
        window_s: int = 300,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
    ) -> None:
        self.quotas = quotas
        self.window_s = window_s
        self.time_scale = time_scale
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], tuple[int, int]] = {}  # (caller, bucket) -> (window number, taken)
        self.refused = 0  # 429s answered, for assertions

    def take(
        self, bucket: str, caller: str = "", quotas: Mapping[str, int] | None = None
    ) -> tuple[bool, dict[str, str]]:
        """Count one request of ``caller``: (allowed, the RateLimit headers to answer with).

        ``quotas`` (e.g. the caller's plan) replaces the server-wide ones for this request.
        """
        quota = (self.quotas if quotas is None else quotas).get(bucket)
        if quota is None:
            return True, {}
        scale = self.time_scale
        hub_now = self._clock() * scale
        window = int(hub_now // self.window_s)
        reset = max(1, math.ceil(((window + 1) * self.window_s - hub_now) / scale))
        key = (caller, bucket)
        with self._lock:
            seen, used = self._used.get(key, (window, 0))
            if seen != window:
                used = 0
            allowed = used < quota
            if allowed:
                used += 1
            else:
                self.refused += 1
            if len(self._used) > 100_000:  # bound memory on long-running servers
                self._used.clear()
            self._used[key] = (window, used)
        headers = {
            "RateLimit": f'"{bucket}";r={quota - used};t={reset}',
            "RateLimit-Policy": f'"fixed window";"{bucket}";q={quota};w={max(1, math.ceil(self.window_s / scale))}',
        }
        if not allowed:
            headers["Retry-After"] = str(reset)
        return allowed, headers
