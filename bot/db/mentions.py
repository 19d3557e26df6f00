"""Mentions the bot has read: one row per comment id, with the decision taken on it.

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> store = MentionStore(db)
>>> store.record({"comment_id": "c1", "repo": "a/m", "discussion_num": 1, "author": "a", "command": {}, "outcome": "accepted"})
>>> store.record({"comment_id": "c1", "repo": "a/m", "discussion_num": 1, "author": "a", "command": {}, "outcome": "refused"})
>>> store.outcome_of("c1"), store.count(author="a", outcomes=["accepted"])
('accepted', 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Mention, utcnow


class MentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def outcome_of(self, comment_id: str) -> str | None:
        """The decision recorded for this comment, or None when it was never read."""
        with self.db.session() as s:
            seen = s.scalars(select(Mention).where(Mention.comment_id == comment_id)).first()
            return seen.outcome if seen is not None else None

    def record(self, values: dict[str, Any]) -> None:
        """Record a mention once (a replay keeps the first decision)."""
        with self.db.session(write=True) as s:
            s.execute(self.db.insert_ignoring(Mention, {"at": utcnow(), **values}, ["comment_id"]))

    def count(
        self,
        *,
        author: str | None = None,
        repo: str | None = None,
        outcomes: Sequence[str] = (),
        since: datetime | None = None,
    ) -> int:
        conds: list[Any] = []
        if author is not None:
            conds.append(Mention.author == author)
        if repo is not None:
            conds.append(Mention.repo == repo)
        if outcomes:
            conds.append(Mention.outcome.in_(list(outcomes)))
        if since is not None:
            conds.append(Mention.at >= since)
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(Mention).where(*conds)) or 0
