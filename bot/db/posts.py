"""What the bot posted, by its marker: one row per discussion, moderation issue or reply.

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> store = PostStore(db)
>>> store.record(marker="m1", target="discussion", repo="a/m", num=3, comment_id="c", url=None, finding_id=7,
...              approved_by="mod", edited=False)
>>> store.by_marker("m1").discussion_num
3
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Post, utcnow


class PostView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    marker: str
    target: str
    repo: str
    discussion_num: int | None
    comment_id: str | None
    url: str | None
    finding_id: int | None
    approved_by: str | None
    posted_at: datetime | None = None
    edits: int = 0


class PostStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def by_marker(self, marker: str) -> PostView | None:
        with self.db.session() as s:
            row = s.scalars(select(Post).where(Post.marker == marker)).first()
            return PostView.model_validate(row) if row is not None else None

    def record(
        self,
        *,
        marker: str,
        target: str,
        repo: str,
        num: int | None,
        comment_id: str | None,
        url: str | None,
        finding_id: int | None,
        approved_by: str | None,
        edited: bool,
    ) -> None:
        """Store a new post, or count an edit of the one with this marker."""
        with self.db.session(write=True) as s:
            row = s.scalars(select(Post).where(Post.marker == marker)).first()
            if row is None:
                s.add(
                    Post(
                        marker=marker,
                        target=target,
                        repo=repo,
                        discussion_num=num,
                        comment_id=comment_id,
                        url=url,
                        finding_id=finding_id,
                        approved_by=approved_by,
                        posted_at=utcnow(),
                        edits=0,
                    )
                )
            elif edited:
                row.edits += 1
                row.finding_id = finding_id or row.finding_id
