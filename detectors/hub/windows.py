"""What is left of the token's rate-limit windows, as the Hub's answers last said.

Every Hub answer may carry ``RateLimit: "<bucket>";r=<remaining>;t=<seconds to reset>`` (buckets
``api`` and ``resolvers``, fixed 5-minute windows). The client notes the latest per bucket; a
scheduler reads :meth:`RateWindows.left` to hold back work that would not fit in the window.

>>> w = RateWindows(clock=lambda: 100.0)
>>> w.note({"RateLimit": '"resolvers";r=40;t=30', "RateLimit-Policy": '"fixed window";"resolvers";q=5000;w=300'})
>>> w.left("resolvers"), w.reset_at("resolvers"), w.left("api")
(40, 130.0, None)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """One bucket's window as last reported: requests left, when it resets (clock seconds), its quota."""

    remaining: int
    reset_at: float
    quota: int | None = None


class RateWindows:
    """Latest :class:`Window` per bucket, thread-safe; a window past its reset reads as unknown."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}

    def note(self, headers: Mapping[str, str]) -> None:
        """Record the ``RateLimit`` headers of one answer (nothing when it has none or they are odd)."""
        from huggingface_hub.utils import parse_ratelimit_headers

        try:
            info = parse_ratelimit_headers(headers)
        except (ValueError, TypeError):
            return
        if info is None:
            return
        window = Window(max(info.remaining, 0), self._clock() + max(info.reset_in_seconds, 0), info.limit)
        with self._lock:
            old = self._windows.get(info.resource_type)
            # Concurrent answers arrive out of order: within one window the lowest count is the latest.
            if old is not None and abs(old.reset_at - window.reset_at) < 2 and old.remaining < window.remaining:
                return
            self._windows[info.resource_type] = window

    def get(self, bucket: str) -> Window | None:
        with self._lock:
            window = self._windows.get(bucket)
        if window is None or window.reset_at <= self._clock():
            return None  # reset since: the whole quota is back (its size may be unknown)
        return window

    def left(self, bucket: str) -> int | None:
        """Requests left in ``bucket``'s current window; None when unknown (never said, or reset since)."""
        window = self.get(bucket)
        return None if window is None else window.remaining

    def reset_at(self, bucket: str) -> float | None:
        window = self.get(bucket)
        return None if window is None else window.reset_at

    def snapshot(self) -> dict[str, Window]:
        with self._lock:
            buckets = list(self._windows)
        return {b: w for b in buckets if (w := self.get(b)) is not None}


__all__ = ["RateWindows", "Window"]
