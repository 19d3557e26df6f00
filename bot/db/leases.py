"""Named leases in the database: one holder at a time, taken over only after expiry, with a fence.

A lease row holds its owner, when it expires and a fencing counter. ``acquire`` renews the lease of
its holder, or takes a free or expired lease over (the fence goes up by one); a live lease of
another owner is refused. Every change is a conditional UPDATE under a row lock, so two processes
racing for an expired lease get one winner on SQLite and PostgreSQL alike.

A write that must come from the holder only (the poller's cursor moves) calls :func:`check_fence`
inside its own transaction: it locks the lease row and refuses when the owner or fence changed, so
a process that stalled past its expiry and lost the lease cannot write afterwards.

>>> from datetime import UTC, datetime, timedelta
>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> t = [datetime(2026, 1, 1, tzinfo=UTC)]
>>> leases = LeaseStore(db, clock=lambda: t[0])
>>> leases.acquire("poller", "a", 30).fence
1
>>> leases.acquire("poller", "b", 30) is None          # a holds it
True
>>> t[0] += timedelta(seconds=31)
>>> got = leases.acquire("poller", "b", 30)             # expired: b takes over
>>> got.fence, got.previous_owner, got.took_over
(2, 'a', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Update, and_, or_, select, update
from sqlalchemy.orm import Session

from provbot.bot.db import DatabaseError
from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Lease, utcnow

Clock = Callable[[], datetime]

#: The lease of the process that walks the Hub's listings and moves the poll cursors.
POLLER_LEASE = "poller"


class LeaseLost(DatabaseError):
    """A fenced write came from a process that no longer holds the lease; nothing was written."""


@dataclass(frozen=True)
class Fence:
    """Proof of holding lease ``name``: the owner and the fence it was granted under."""

    name: str
    owner: str
    token: int


class LeaseView(BaseModel):
    """A detached copy of a lease row."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    name: str
    owner: str | None
    fence: int
    expires_at: datetime | None
    acquired_at: datetime | None
    renewed_at: datetime | None


class Acquired(BaseModel):
    """The outcome of a successful ``acquire``."""

    model_config = ConfigDict(frozen=True)

    name: str
    owner: str
    fence: int
    expires_at: datetime
    #: The holder before this call (None: the lease was free or never held).
    previous_owner: str | None
    #: True when the lease changed hands from another owner whose lease had expired.
    took_over: bool
    #: True when this call started a new term (a new fence): first grant, release before, or takeover.
    new_term: bool

    @property
    def proof(self) -> Fence:
        return Fence(self.name, self.owner, self.fence)


class LeaseStore:
    """Acquire, renew, release and read named leases. ``clock`` is injectable for tests."""

    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self.db = db
        self.clock = clock

    def acquire(self, name: str, owner: str, ttl_s: float) -> Acquired | None:
        """Renew ``owner``'s lease, or take a free or expired one; None while another owner's is live."""
        now = self.clock()
        expires = now + timedelta(seconds=ttl_s)
        with self.db.session(write=True) as s:
            s.execute(self.db.insert_ignoring(Lease, {"name": name, "owner": None, "fence": 0}, ["name"]))
            row = s.scalars(select(Lease).where(Lease.name == name).with_for_update()).one()
            previous, fence = row.owner, row.fence
            if previous == owner:
                values: dict[str, object] = {"expires_at": expires, "renewed_at": now}
                cond = Lease.owner == owner
            else:
                values = {
                    "owner": owner,
                    "fence": Lease.fence + 1,
                    "expires_at": expires,
                    "acquired_at": now,
                    "renewed_at": now,
                }
                # Re-checked in the UPDATE itself: only a free or expired lease changes hands.
                cond = and_(
                    Lease.fence == fence, or_(Lease.owner.is_(None), Lease.expires_at.is_(None), Lease.expires_at < now)
                )
            res = s.execute(
                update(Lease)
                .where(Lease.name == name, cond)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:
                return None
        new_term = previous != owner
        return Acquired(
            name=name,
            owner=owner,
            fence=fence + 1 if new_term else fence,
            expires_at=expires,
            previous_owner=previous,
            took_over=new_term and previous is not None,
            new_term=new_term,
        )

    def renew(self, fence: Fence, ttl_s: float) -> bool:
        """Extend the lease while ``fence`` still holds it; False when it changed hands."""
        now = self.clock()
        with self.db.session(write=True) as s:
            res = s.execute(
                _held(fence)
                .values(expires_at=now + timedelta(seconds=ttl_s), renewed_at=now)
                .execution_options(synchronize_session=False)
            )
            return res.rowcount == 1

    def release(self, fence: Fence) -> bool:
        """Give the lease up at once (a clean stop), so that another process need not wait for expiry."""
        now = self.clock()
        with self.db.session(write=True) as s:
            res = s.execute(
                _held(fence)
                .values(owner=None, expires_at=now, renewed_at=now)
                .execution_options(synchronize_session=False)
            )
            return res.rowcount == 1

    def get(self, name: str) -> LeaseView | None:
        with self.db.session() as s:
            row = s.get(Lease, name)
            return LeaseView.model_validate(row) if row is not None else None


def check_fence(session: Session, fence: Fence) -> None:
    """Refuse the caller's transaction unless ``fence`` still holds its lease (raises :class:`LeaseLost`).

    The lease row stays locked until the caller commits (``FOR UPDATE`` on PostgreSQL, the write
    lock of ``session(write=True)`` on SQLite), so no takeover can slip in between check and write.
    """
    row = session.scalars(select(Lease).where(Lease.name == fence.name).with_for_update()).one_or_none()
    if row is None or row.owner != fence.owner or row.fence != fence.token:
        holder = "nobody" if row is None or row.owner is None else row.owner
        raise LeaseLost(f"lease {fence.name!r} lost (fence {fence.token}); now held by {holder}")


def _held(fence: Fence) -> Update:
    """An update of the lease that applies only while ``fence`` still holds it."""
    return update(Lease).where(Lease.name == fence.name, Lease.owner == fence.owner, Lease.fence == fence.token)
