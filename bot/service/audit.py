"""The append-only audit log: every poll, enqueue, mention, scan, post, review decision and error.

Records go through a :class:`~provbot.bot.service.redact.Redactor` first, so a token can never be stored.
The ORM refuses updates and deletes of audit rows (see ``bot.db.models_bot``).

>>> from provbot.bot.service.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> log = AuditLog(db)
>>> _ = log.record("poll", message="walked 3 models", data={"new": 1})
>>> [e.kind for e in log.query(kind="poll")]
['poll']
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from provbot.bot.db.models_bot import AuditRecord, utcnow
from provbot.bot.service.database import Database
from provbot.bot.service.redact import Redactor

log = logging.getLogger(__name__)

AuditKind = Literal["poll", "enqueue", "mention", "scan", "finding", "post", "review", "error", "service"]


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


class AuditLog:
    """Append and query audit records."""

    def __init__(self, db: Database, redactor: Redactor | None = None) -> None:
        self.db = db
        self.redactor = redactor or Redactor()

    def record(
        self,
        kind: AuditKind,
        *,
        actor: str | None = None,
        repo: str | None = None,
        revision: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
        session: Session | None = None,
    ) -> None:
        """Append one record (inside ``session`` when given, so it commits with the change it describes)."""
        r = self.redactor
        row = AuditRecord(
            at=utcnow(),
            kind=kind,
            actor=r.text(actor) if actor else None,
            repo=r.text(repo) if repo else None,
            revision=r.text(revision) if revision else None,
            message=r.text(message)[:4000],
            data=r.data(data or {}),
        )
        if session is not None:
            session.add(row)
            return
        with self.db.session() as s:
            s.add(row)

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
