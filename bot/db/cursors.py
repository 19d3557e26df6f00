"""Where each Hub listing walk stopped: the newest time seen and the ids at exactly that time.

>>> from datetime import datetime, UTC
>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> store = CursorStore(db)
>>> store.get("created_at")
(None, set())
>>> store.set("created_at", datetime(2026, 1, 1, tzinfo=UTC), {"b/y", "a/x"})
>>> store.get("created_at")[1] == {"a/x", "b/y"}
True

A cursor write may carry the poller lease's :class:`~provbot.bot.db.leases.Fence`: it is then made
only if that fence still holds the lease, checked in the same transaction.
"""

from __future__ import annotations

from datetime import datetime

from provbot.bot.db.database import Database
from provbot.bot.db.leases import Fence, check_fence
from provbot.bot.db.models_bot import PollCursor, utcnow


class CursorStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str) -> tuple[datetime | None, set[str]]:
        with self.db.session() as s:
            row = s.get(PollCursor, name)
            return (row.position, set(row.boundary_ids)) if row is not None else (None, set())

    def set(self, name: str, position: datetime, boundary: set[str], *, fence: Fence | None = None) -> None:
        """Move cursor ``name``; with ``fence``, only while it holds its lease (else :class:`LeaseLost`)."""
        with self.db.session(write=True) as s:
            if fence is not None:
                check_fence(s, fence)
            token = fence.token if fence is not None else None
            row = s.get(PollCursor, name)
            if row is None:
                s.add(
                    PollCursor(
                        name=name, position=position, boundary_ids=sorted(boundary), updated_at=utcnow(), fence=token
                    )
                )
            else:
                row.position, row.boundary_ids, row.updated_at, row.fence = position, sorted(boundary), utcnow(), token
