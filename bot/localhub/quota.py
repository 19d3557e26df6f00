"""Per-bucket request quotas in fixed windows, as the Hub counts them per token.

Buckets: ``api`` (``/api/...``) and ``resolvers`` (``/{repo}/resolve/...``); the CDN is not
counted. Every counted answer carries ``RateLimit``/``RateLimit-Policy``; past the quota it is a 429.

>>> q = QuotaWindows({"api": 2}, window_s=300, clock=lambda: 0.0)
>>> [q.take("api")[0] for _ in range(3)]
[True, True, False]
>>> q.take("api")[1]["RateLimit"]
'"api";r=0;t=300'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def bucket_of(path: str) -> str | None:
    """The quota bucket a request path counts against (None: not counted)."""
    if path.startswith("/api/"):
        return "api"
    parts = path.split("/")
    if len(parts) > 4 and parts[3] == "resolve":
        return "resolvers"
    return None


class QuotaWindows:
    """Requests taken per bucket in the current fixed window (windows start at multiples of ``window_s``)."""

    def __init__(self, quotas: dict[str, int], window_s: int = 300, clock: Callable[[], float] = time.time) -> None:
        self.quotas = quotas
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, int]] = {}  # bucket -> (window number, requests taken)
        self.refused = 0  # 429s answered, for assertions

    def take(self, bucket: str) -> tuple[bool, dict[str, str]]:
        """Count one request: (allowed, the RateLimit headers to answer with)."""
        quota = self.quotas.get(bucket)
        if quota is None:
            return True, {}
        now = self._clock()
        window = int(now // self.window_s)
        reset = max(1, int((window + 1) * self.window_s - now))
        with self._lock:
            seen, used = self._used.get(bucket, (window, 0))
            if seen != window:
                used = 0
            allowed = used < quota
            if allowed:
                used += 1
            else:
                self.refused += 1
            self._used[bucket] = (window, used)
        headers = {
            "RateLimit": f'"{bucket}";r={quota - used};t={reset}',
            "RateLimit-Policy": f'"fixed window";"{bucket}";q={quota};w={self.window_s}',
        }
        if not allowed:
            headers["Retry-After"] = str(reset)
        return allowed, headers
