"""Where a file's ``resolve`` URL last redirected to: its signed CDN URL, kept until it expires.

The Hub answers ``/resolve/`` of a weight file with a 302 to a signed CDN URL. Range reads sent
straight there skip one resolve call each (resolve calls have a quota of their own). A target is
kept until its signature expires (``X-Amz-Expires`` with ``X-Amz-Date``, ``Expires`` or the local
Hub's ``expires``), less a margin, or for :data:`DEFAULT_TTL_S` when the URL does not say.

>>> cache = RedirectCache(clock=lambda: 1000.0)
>>> cache.put("https://hub/r", "https://cdn/f?Expires=1300")
>>> cache.get("https://hub/r")
'https://cdn/f?Expires=1300'
>>> expiry("https://cdn/f?X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600", now=0.0)
1767229200.0
"""

from __future__ import annotations

import threading
import time
from calendar import timegm
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

#: Lifetime assumed for a target whose URL does not say when it expires.
DEFAULT_TTL_S = 600.0
#: A target is dropped this long before it expires (clock skew, a read in flight).
MARGIN_S = 60.0
#: Targets kept (one per file read; a 400B model has a few hundred shards).
MAX_ENTRIES = 4096
#: Locks that order the first resolve of a file (striped: files share them by hash).
_STRIPES = 64


def expiry(url: str, now: float) -> float:
    """When a signed URL stops working (epoch seconds), from its query; ``now + DEFAULT_TTL_S`` if unsaid."""
    query = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query)}
    try:
        if "x-amz-expires" in query and "x-amz-date" in query:
            signed = timegm(time.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ"))
            return float(signed + int(query["x-amz-expires"]))
        if "expires" in query:
            return float(int(query["expires"]))
    except (ValueError, OverflowError):
        pass  # an odd value: fall back to the conservative default
    return now + DEFAULT_TTL_S


class RedirectCache:
    """resolve URL -> (target URL, usable until), thread-safe, least recently used dropped first."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._targets: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._direct: OrderedDict[str, None] = OrderedDict()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    def lock(self, url: str) -> threading.Lock:
        """The lock the first resolve of ``url`` is made under (other reads of the file wait for it)."""
        return self._stripes[hash(url) % _STRIPES]

    def mark_direct(self, url: str) -> None:
        """``url`` answered without a redirect (a small file, a server without a CDN): reads need no ordering."""
        with self._lock:
            self._direct[url] = None
            while len(self._direct) > self._max:
                self._direct.popitem(last=False)

    def is_direct(self, url: str) -> bool:
        with self._lock:
            return url in self._direct

    def put(self, url: str, target: str) -> None:
        now = self._clock()
        until = min(expiry(target, now), now + 24 * 3600) - MARGIN_S
        if until <= now:
            return  # already (nearly) expired: nothing to gain
        with self._lock:
            self._direct.pop(url, None)
            self._targets[url] = (target, until)
            self._targets.move_to_end(url)
            while len(self._targets) > self._max:
                self._targets.popitem(last=False)

    def get(self, url: str) -> str | None:
        """The live target of ``url``, or None (never seen, or expired)."""
        with self._lock:
            hit = self._targets.get(url)
            if hit is None:
                return None
            if hit[1] <= self._clock():
                del self._targets[url]
                return None
            self._targets.move_to_end(url)
            return hit[0]

    def drop(self, url: str, target: str | None = None) -> None:
        """Forget ``url``'s target (only if it is still ``target``: another thread may have a newer one)."""
        with self._lock:
            hit = self._targets.get(url)
            if hit is not None and (target is None or hit[0] == target):
                del self._targets[url]

    def __len__(self) -> int:
        with self._lock:
            return len(self._targets)


__all__ = ["DEFAULT_TTL_S", "MARGIN_S", "RedirectCache", "expiry"]
