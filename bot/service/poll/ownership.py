"""Which `provbot run` process polls: this process's claim on the poller lease.

Several processes may share one database. Each runs workers; only the holder of the poller lease
walks the Hub's listings and moves the cursors. The holder renews the lease (every third of
``bot.poll_lease_seconds``); when it dies, another process takes the lease over once it expires and
walks from the cursors the dead one left. A clean stop releases the lease at once. Every change of
holder seen by this process is audited (kind ``lease``) and counted in the metrics.

>>> from provbot.bot.service.context import BotContext
>>> from provbot.bot.settings import Settings
>>> ctx = BotContext.build(Settings(database_url="sqlite://", hub_endpoint="http://127.0.0.1:9"))
>>> a, b = PollOwnership(ctx, owner="a"), PollOwnership(ctx, owner="b")
>>> a.claim().token, b.claim()
(1, None)
>>> a.release(); b.claim().token
2
"""

from __future__ import annotations

import logging
import threading

from provbot.bot.db.leases import POLLER_LEASE, Acquired, Fence, LeaseStore, LeaseView
from provbot.bot.service.context import BotContext
from provbot.bot.service.queue.runs import worker_id

log = logging.getLogger(__name__)


class PollOwnership:
    """Claim, renew and release the poller lease for one process (``owner`` unique per process)."""

    def __init__(self, ctx: BotContext, *, owner: str | None = None) -> None:
        self.ctx = ctx
        self.owner = owner or worker_id()
        self.ttl_s = ctx.settings.bot.poll_lease_seconds
        self.leases = LeaseStore(ctx.db)
        self._fence: Fence | None = None
        self._lock = threading.Lock()

    @property
    def fence(self) -> Fence | None:
        """The fence this process holds the lease under, as of its last claim (None: another polls)."""
        with self._lock:
            return self._fence

    def claim(self) -> Fence | None:
        """Renew this process's lease, or take over a free or expired one; None while another process holds it."""
        got = self.leases.acquire(POLLER_LEASE, self.owner, self.ttl_s)
        if got is None:
            with self._lock:
                had, self._fence = self._fence, None
            if had is not None:
                view = self.leases.get(POLLER_LEASE)
                self._lost(had, f"now held by {view.owner if view and view.owner else 'nobody'}")
            return None
        with self._lock:
            had, self._fence = self._fence, got.proof
        if had != got.proof:
            self._gained(got)
        return got.proof

    def lost(self, reason: str) -> None:
        """A fenced write was refused: this process polls no more until it claims the lease again."""
        with self._lock:
            had, self._fence = self._fence, None
        if had is not None:
            self._lost(had, reason)

    def release(self) -> None:
        """Give the lease up (a clean stop): another process may poll at once."""
        with self._lock:
            had, self._fence = self._fence, None
        if had is None:
            return
        try:
            released = self.leases.release(had)
        except Exception as exc:  # the database is gone: the lease expires instead
            log.warning("releasing the poller lease failed: %s", self.ctx.redactor.text(str(exc)))
            return
        self.ctx.metrics.poll_owner.set(0)
        if released:
            self.ctx.metrics.poll_lease.labels(event="released").inc()
            self._audit("poller lease released", had)

    def current(self) -> LeaseView | None:
        """The lease row as the database has it now (for /healthz)."""
        return self.leases.get(POLLER_LEASE)

    # -- transitions ------------------------------------------------------------------------------
    def _gained(self, got: Acquired) -> None:
        self.ctx.metrics.poll_owner.set(1)
        event = "took_over" if got.took_over else "acquired"
        self.ctx.metrics.poll_lease.labels(event=event).inc()
        message = (
            f"poller lease taken over from {got.previous_owner} after it expired"
            if got.took_over
            else "poller lease acquired"
        )
        log.info("%s (fence %d)", message, got.fence)
        self._audit(message, got.proof, previous_owner=got.previous_owner)

    def _lost(self, had: Fence, reason: str) -> None:
        self.ctx.metrics.poll_owner.set(0)
        self.ctx.metrics.poll_lease.labels(event="lost").inc()
        log.warning("poller lease lost (fence %d): %s", had.token, reason)
        self._audit(f"poller lease lost: {reason}", had)

    def _audit(self, message: str, fence: Fence, **extra: str | None) -> None:
        data = {"lease": fence.name, "owner": self.owner, "fence": fence.token, **extra}
        try:
            self.ctx.audit.record("lease", message=message, data=data)
        except Exception as exc:  # the audit must not stop polling, nor the stop
            log.warning("auditing a lease change failed: %s", self.ctx.redactor.text(str(exc)))
