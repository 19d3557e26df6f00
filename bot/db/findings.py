"""Findings: one per repo@revision and origin, with their review status.

>>> from provbot.bot.db.database import Database
>>> db = Database("sqlite://"); db.migrate()
>>> store = FindingStore(db)
>>> row = {"repo": "org/m", "revision": "abc", "origin": "poll", "relation": "merge", "status": "pending",
...        "summary": "merge", "result": {}, "declared": {}}
>>> first, again = store.add_once(row), store.add_once({**row, "status": "recorded"})
>>> first == again, store.get(first[0]).status
(True, 'pending')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from provbot.bot.db.database import Database
from provbot.bot.db.models_bot import Finding, utcnow


class FindingView(BaseModel):
    """A detached copy of a finding row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    repo: str
    revision: str
    origin: str
    job_id: int | None = None
    relation: str
    status: str
    summary: str
    result: dict[str, Any]
    declared: dict[str, Any]
    reason: str | None
    reviewer: str | None
    created_at: datetime
    decided_at: datetime | None
    identity: dict[str, Any] | None = None  # the behaviour check run with the scan (IdentityCheck JSON)


class FindingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_once(self, values: dict[str, Any]) -> tuple[int, str]:
        """Insert unless this repo@revision and origin has a finding; (id, status) of the stored one."""
        row = {"created_at": utcnow(), **values}
        with self.db.session(write=True) as s:
            s.execute(self.db.insert_ignoring(Finding, row, ["repo", "revision", "origin"]))
            found = s.scalars(select(Finding).where(*self._key(values["repo"], values["revision"], values["origin"])))
            finding = found.one()
            return finding.id, finding.status

    @staticmethod
    def _key(repo: str, revision: str, origin: str) -> tuple[Any, ...]:
        return Finding.repo == repo, Finding.revision == revision, Finding.origin == origin

    def exists(self, repo: str, revision: str, origin: str) -> bool:
        with self.db.session() as s:
            return s.scalars(select(Finding.id).where(*self._key(repo, revision, origin))).first() is not None

    def get(self, finding_id: int) -> FindingView | None:
        with self.db.session() as s:
            f = s.get(Finding, finding_id)
            return FindingView.model_validate(f) if f is not None else None

    def list(self, status: str | None = None, limit: int = 100) -> list[FindingView]:
        """Findings oldest first, of one status (None or "all": every status)."""
        with self.db.session() as s:
            q = select(Finding).order_by(Finding.id)
            if status and status != "all":
                q = q.where(Finding.status == status)
            return [FindingView.model_validate(f) for f in s.scalars(q.limit(limit))]

    def transition(self, finding_id: int, expect: str, values: dict[str, Any]) -> tuple[FindingView | None, str | None]:
        """Set ``values`` if the finding's status is ``expect``: (the updated finding, None) on success,
        (None, its current status) when it is in another state, (None, None) when there is none."""
        with self.db.session(write=True) as s:
            f = s.get(Finding, finding_id)
            if f is None:
                return None, None
            if f.status != expect:
                return None, f.status
            for name, value in values.items():
                setattr(f, name, value)
            return FindingView.model_validate(f), None
