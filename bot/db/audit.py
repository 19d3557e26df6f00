"""The audit log's rows: append and query (the service redacts before anything reaches here).

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> store = AuditStore(db)
>>> store.add({"kind": "poll", "message": "walked 3 models", "data": {"new": 1}})
>>> [e.kind for e in store.query(kind="poll")]
['poll']
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import AuditRecord, utcnow


class AuditEntry(BaseModel):
    """One audit record as the CLI and the API show it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: str
    actor: str | None
    repo: str | None
    revision: str | None
    message: str
    data: dict[str, Any]


class AuditStore:
    """Append-only: the ORM refuses updates and deletes of audit rows (models_bot)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, values: dict[str, Any]) -> None:
        with self.db.session() as s:
            s.add(AuditRecord(at=utcnow(), **values))

    def query(
        self,
        *,
        kind: str | None = None,
        repo: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        """Records matching every given filter, oldest first (the newest ``limit`` of them)."""
        q = select(AuditRecord)
        if kind:
            q = q.where(AuditRecord.kind == kind)
        if repo:
            q = q.where(AuditRecord.repo == repo)
        if actor:
            q = q.where(AuditRecord.actor == actor)
        if since:
            q = q.where(AuditRecord.at >= since)
        if until:
            q = q.where(AuditRecord.at <= until)
        with self.db.session() as s:
            rows = list(s.scalars(q.order_by(AuditRecord.id.desc()).limit(limit)))
        return [AuditEntry.model_validate(row) for row in reversed(rows)]
