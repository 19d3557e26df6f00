"""Request budgets: a job starts only when the token's rate-limit windows have room for it.

The Hub client notes the ``RateLimit`` headers of every answer (:class:`~provbot.detectors.hub.windows.RateWindows`).
Before a job runs, its expected needs per bucket (``bot.job_requests``) are compared with what is
left; a job that would not fit waits in the queue until the window resets, so a steady stream of
jobs meets no 429. An unknown window (none seen yet, or reset since) does not hold anything back.

>>> from provbot.detectors.hub.windows import RateWindows
>>> w = RateWindows(clock=lambda: 0.0)
>>> w.note({"RateLimit": '"resolvers";r=100;t=60'})
>>> start_after(w, {"resolvers": 600}), start_after(w, {"resolvers": 50}), start_after(w, {"api": 9})
(60.0, None, None)
"""

from __future__ import annotations

from collections.abc import Mapping

from provbot.detectors.hub.windows import RateWindows


def start_after(windows: RateWindows, needs: Mapping[str, int]) -> float | None:
    """When a job needing ``needs`` requests per bucket may start (clock seconds), or None: now."""
    latest: float | None = None
    for bucket, need in needs.items():
        window = windows.get(bucket)
        if window is None:
            continue
        # A job needing more than a whole window can never fit: it only waits for a fresh one.
        want = min(need, window.quota) if window.quota else need
        if window.remaining < want:
            latest = window.reset_at if latest is None else max(latest, window.reset_at)
    return latest
