"""The append-only audit log: every poll, enqueue, mention, scan, post, review decision, error and
change of the process that polls (``lease``).

Records go through a :class:`~provbot.bot.service.redact.Redactor` first, so a token can never be stored.
The ORM refuses updates and deletes of audit rows (see ``bot.db.models_bot``).

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> log = AuditLog(db)
>>> _ = log.record("poll", message="walked 3 models", data={"new": 1})
>>> [e.kind for e in log.query(kind="poll")]
['poll']
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from provbot.bot.db.audit import AuditEntry, AuditStore
from provbot.bot.db.database import Database
from provbot.bot.service.redact import Redactor

log = logging.getLogger(__name__)

AuditKind = Literal["poll", "enqueue", "mention", "scan", "finding", "post", "review", "error", "service", "lease"]

__all__ = ["AuditEntry", "AuditKind", "AuditLog"]


class AuditLog:
    """Append and query audit records."""

    def __init__(self, db: Database, redactor: Redactor | None = None) -> None:
        self.store = AuditStore(db)
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
    ) -> None:
        """Append one record, with secrets redacted from every field."""
        r = self.redactor
        self.store.add(
            {
                "kind": kind,
                "actor": r.text(actor) if actor else None,
                "repo": r.text(repo) if repo else None,
                "revision": r.text(revision) if revision else None,
                "message": r.text(message)[:4000],
                "data": r.data(data or {}),
            }
        )

    def query(self, **filters: Any) -> list[AuditEntry]:
        """Records matching every filter (kind, repo, actor, since, until, limit): see AuditStore.query."""
        return self.store.query(**filters)
