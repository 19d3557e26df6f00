"""Request budgets: a job starts only when the token's rate-limit windows have room for it.

The Hub client notes the ``RateLimit`` headers of every answer (:class:`~provbot.detectors.hub.windows.RateWindows`).
Before a job runs, its expected needs per bucket (``bot.job_requests``) are compared with what is
left; a job that would not fit waits in the queue until the window resets, so a steady stream of
jobs meets no 429. An unknown window (none seen yet, or reset since) does not hold anything back.

Workers that start at the same moment would each see the whole of what is left; :class:`Reservations`
keeps what the jobs already running in this process were promised and have not spent yet, so the
next job is weighed against what remains after them.

>>> from provbot.detectors.hub.windows import RateWindows
>>> w = RateWindows(clock=lambda: 0.0)
>>> w.note({"RateLimit": '"resolvers";r=100;t=60'})
>>> start_after(w, {"resolvers": 600}), start_after(w, {"resolvers": 50}), start_after(w, {"api": 9})
(60.0, None, None)
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from provbot.detectors.hub.windows import RateWindows, Window


def start_after(windows: RateWindows, needs: Mapping[str, int], held: Mapping[str, int] | None = None) -> float | None:
    """When a job needing ``needs`` requests per bucket may start (clock seconds), or None: now.

    ``held``: requests per bucket already promised to running jobs (see :class:`Reservations`).
    """
    latest: float | None = None
    for bucket, need in needs.items():
        window = windows.get(bucket)
        if window is None:
            continue
        # A job needing more than a whole window can never fit: it only waits for a fresh one.
        want = min(need, window.quota) if window.quota else need
        if window.remaining - (held or {}).get(bucket, 0) < want:
            latest = window.reset_at if latest is None else max(latest, window.reset_at)
    return latest


@dataclass(frozen=True)
class _Promise:
    needs: dict[str, int]
    seen: dict[str, Window]  # each bucket's window when the job started


class Reservations:
    """Requests promised to the jobs running in this process, so concurrent starts share one window.

    A running job's unspent share is its need less what the window has lost since it started
    (counted from the window's full quota when it started in an earlier window). Requests of other
    jobs count as its own, so the estimate errs towards starting work, never towards holding it
    back for a whole window; a job that finishes gives its share back.

    >>> w = RateWindows(clock=lambda: 0.0)
    >>> w.note({"RateLimit": '"resolvers";r=1000;t=60'})
    >>> r = Reservations()
    >>> r.start(w, "job-1", {"resolvers": 600}), r.start(w, "job-2", {"resolvers": 600})
    (None, 60.0)
    >>> w.note({"RateLimit": '"resolvers";r=700;t=59'})  # job-1 has spent 300 of its 600
    >>> r.held(w)
    {'resolvers': 300}
    >>> r.release("job-1"); r.start(w, "job-2", {"resolvers": 600})
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._promises: dict[Hashable, _Promise] = {}

    def start(self, windows: RateWindows, key: Hashable, needs: Mapping[str, int]) -> float | None:
        """Promise ``needs`` to job ``key`` if the windows have room after the running jobs' shares;
        otherwise nothing is promised and the answer is when to try again (clock seconds)."""
        with self._lock:
            when = start_after(windows, needs, self._held(windows))
            if when is None:
                self._promises[key] = _Promise(dict(needs), windows.snapshot())
            return when

    def release(self, key: Hashable) -> None:
        with self._lock:
            self._promises.pop(key, None)

    def held(self, windows: RateWindows) -> dict[str, int]:
        """Requests per bucket promised to running jobs and not spent yet."""
        with self._lock:
            return self._held(windows)

    def _held(self, windows: RateWindows) -> dict[str, int]:
        now = windows.snapshot()
        out: dict[str, int] = {}
        for promise in self._promises.values():
            for bucket, need in promise.needs.items():
                window = now.get(bucket)
                if window is None:
                    continue  # unknown (or reset since): nothing is held back anyway
                before = promise.seen.get(bucket)
                if before is not None and abs(before.reset_at - window.reset_at) < 2:
                    spent = before.remaining - window.remaining
                else:  # started in an earlier window, or before any answer: what this window has lost
                    spent = (window.quota - window.remaining) if window.quota else 0
                out[bucket] = out.get(bucket, 0) + max(0, need - max(spent, 0))
        return {b: n for b, n in out.items() if n}
